"""The officer console (民警工作台): plain HTML pages and same-origin JS/CSS, no build step.

The pages are shells (`templates/`, plain HTML); their scripts (`static/`) call the JSON
API documented in docs/console-api.md. See `gateway/console/routes.py`.
"""
