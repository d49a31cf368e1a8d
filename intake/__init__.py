"""The intake: receives the university portal's pushes (postPoll, postAnswer) and only stores them.

    python cli.py intake --port 8000
    # the portal's integration URL: http://<host>:8000/api/v1/integration[/<INTAKE_TOKEN>]

Everything that reaches the CRM happens later, in the sync job's scheduled batches,
which reads the inbox with ``SURVEY_SOURCE=intake`` (``sync/source/inbox.py``).
"""
