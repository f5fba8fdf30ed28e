"""The domain layer of 警民通: cases (hand-offs to officers), diversion tickets for the
governance platform, and the database they live in.

Rasa actions, the gateway and the CLI call the service functions here; nothing else
writes SQL.
"""
