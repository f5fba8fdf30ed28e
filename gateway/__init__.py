"""The gateway: WeChat's callback protocol, the officers' API and (in development) the
WeChat simulator, in one FastAPI app (`uvicorn gateway.app:app`)."""
