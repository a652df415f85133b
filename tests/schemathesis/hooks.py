"""Schemathesis hooks: the bearer tokens this run's own requests were given.

A created session's `creator_token` and a join's `websocket_token` are kept as they arrive, and
the DELETE, PUT and PATCH calls on that session or participant are sent with them. Supplied this
way the token counts as real credentials, so the `ignored_auth` check then also probes each such
call without a token and with a wrong one, and expects 401 for both.
"""

import sys

import schemathesis

# Hypothesis describes each filter by parsing its source with `ast`, deep inside schemathesis'
# recursive schema walk; near Python's default limit of 1000 frames that parse fails ("AST
# constructor recursion depth mismatch") and the operation is reported as a runtime error.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

# session id -> creator_token
CREATORS = {}
# (session id, user id) -> websocket_token
PARTICIPANTS = {}


@schemathesis.hook
def after_call(context, case, response):
    if response.status_code != 201:
        return
    try:
        body = response.json()
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    if case.operation.path == "/api/sessions" and "session_id" in body:
        CREATORS[body["session_id"]] = body.get("creator_token")
    elif case.operation.path == "/api/sessions/{id}/join" and "user_id" in body:
        session_id = (case.path_parameters or {}).get("id")
        PARTICIPANTS[(session_id, body["user_id"])] = body.get("websocket_token")


# refresh_interval=None: every case asks again, for the token of the session it names.
@schemathesis.auth(refresh_interval=None, retry_on=[]).apply_to(method=["DELETE", "PUT", "PATCH"])
class RunTokens:
    def get(self, case, context):
        params = case.path_parameters or {}
        session_id, user_id = params.get("id"), params.get("user_id")
        if user_id is not None:
            return PARTICIPANTS.get((session_id, user_id)) or CREATORS.get(session_id)
        return CREATORS.get(session_id)

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
