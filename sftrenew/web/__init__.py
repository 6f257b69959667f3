"""The renewal page, `sftrenew web`: a list of renewals and a live page per renewal with the operator's
buttons, behind a sign-in (docs/user-guide.md, "The renewal page").

`cli` (the command and `hash-password`), `app` (the FastAPI application: sign-in, CSRF, pages, API), `acts`
(the buttons, calling `sftrenew.actions`), `auth` (hashes, users, tokens, the session key; pure), `view`
(what a page shows, from `sftrenew.reading`; pure), `templates/` and `static/` (package data).
"""
