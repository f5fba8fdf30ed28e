"""SIMULATION of WeChat's servers, for development and tests only — not the real adapter.

- `standin.WeChatStandIn`: an in-memory stand-in for the official-account API (access
  tokens, customer-service messages) with programmable failures.
- `routes`: that API under `/simulator/wechat-api` (development points
  `WECHAT_API_BASE_URL` here), a `/simulator/api/send` that sends the gateway's `/wechat`
  the same signed (optionally AES-encrypted) request WeChat would, and a phone-like chat
  page at `/simulator`.

The real WeChat adapter is `integrations/wechat.py`; the real callback is
`gateway/routes/wechat.py`. `gateway.app` mounts these routes only when
`settings.simulator_enabled` (development). State is per process: run one worker.
"""
