"""The officer console (民警工作台): plain HTML pages and same-origin JS/CSS, no build step.

The pages are shells; their scripts call the JSON API documented in docs/console-api.md
with the bearer token kept in `sessionStorage`. See `gateway/console/routes.py`.
"""
