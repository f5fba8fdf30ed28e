"""Adapters to the outside world, each behind a small interface with a local fake:
WeChat (wechatpy), the DingTalk robot, the governance platform and the Rasa HTTP client.

Empty until the WeChat gateway (issue 3) and the officer console (issue 4) need them;
the assistant itself (issue 2) talks to nothing outside this machine.
"""
