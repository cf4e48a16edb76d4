"""The local AWS emulator: moto's server, made as strict as AWS where the service depends
on it, and kept from doing work AWS does not.

IAM, enforced. Every request must be signed by a known principal whose policies allow it,
as in AWS (`INITIAL_NO_AUTH_ACTION_COUNT` is 0). moto's own check sees actions but, for
DynamoDB and KMS, no resources, and no conditions at all; this file evaluates each request
itself, as IAM does: the actions a request needs (a DynamoDB transaction needs PutItem,
UpdateItem, DeleteItem or ConditionCheckItem per item, on its table), the resource ARNs
(the table or the index, the KMS key behind an alias, the queue), the condition keys the
service's policies use (`dynamodb:LeadingKeys` from every key the request touches,
`aws:PrincipalArn`, `sts:ExternalId`), explicit denies, and a queue's own policy. A denied
request answers AccessDenied in the protocol of its service, naming the principal, the
action and the resource, and is printed on stderr (`denied: ...`).
- The administrator (`webhooks-local-admin`, credentials `ADMIN_ACCESS_KEY` and
  `ADMIN_SECRET_KEY`, which the local stack and the admin command use) may do anything.
- `POST /_webhooks/principals` `{"name", "policy"}` makes an IAM user with that one inline
  policy (or gives an existing one that policy) and answers its access key: the local
  stack gives each function of template.yaml its own principal this way.
- `WEBHOOKS_EMULATOR_IAM=off` turns the checks off.

DynamoDB requests made atomic. moto's server answers requests on many threads, and its
DynamoDB backend is not safe for that: a transaction snapshots the whole table, and when
one of its conditions fails it puts the snapshot back, undoing whatever another request
wrote meanwhile. DynamoDB never does that. One lock around every DynamoDB request gives
the emulator the same guarantee; SQS and KMS requests (an SQS long poll among them) are
not held by it.

Indexes, eventually consistent: an index query sees the table as it was a second ago
(`WEBHOOKS_EMULATOR_INDEX_LAG_MS`, default 1000; 0 turns it off), so every path that
reads an index must cope with missing what was just written, as in DynamoDB.

moto's DynamoDB query on the table sorts every item of the table and then keeps those of
the asked partition: a query now starts from the partition's own items (the rest of moto's
query is unchanged). moto's SQS receive counted every message of the queue three times per
message handed out, to read the retention period: it is read directly instead.

`make emulator` installs this file as `.venv/bin/webhooks-emulator`; it takes moto_server's
arguments (`-H 127.0.0.1 -p 4566`).
"""

import argparse
from collections.abc import Mapping
import fnmatch
import json
import logging
import os
import re
import sys
import threading
import time

from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.core.utils import unix_time
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.iam import access_control
from moto.iam.models import iam_backends
from moto.kms.models import kms_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs.models import Message, Queue, SQSBackend, sqs_backends
from moto.core.utils import camelcase_to_underscores
from moto.utilities.utils import get_partition
from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response

# ---------------------------------------------------------------------------------------
# DynamoDB: one request at a time, and queries that read one partition.

_dynamodb = threading.Lock()
_call_action = DynamoHandler.call_action

# Global secondary indexes are eventually consistent in DynamoDB: an index read may miss a
# write of the last moment. An index query here sees each item as it was INDEX_LAG
# seconds ago: every write first records the item's image before it, and a query puts
# back, for each item written since its cutoff, the image before the first such write.
INDEX_LAG = float(os.environ.get("WEBHOOKS_EMULATOR_INDEX_LAG_MS", "1000")) / 1000
_history = {}  # (table, hash, range) -> [(written at, the image before, or None)]
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


def _written_keys(params):
    """(table, key attributes) of every item a write request touches."""
    if "TransactItems" in params:
        for entry in params["TransactItems"]:
            for kind, request in entry.items():
                if kind != "ConditionCheck":
                    yield request.get("TableName"), request.get("Item") if kind == "Put" else request.get("Key")
    elif "RequestItems" in params:
        for table, requests in params["RequestItems"].items():
            for r in requests:
                yield table, (r.get("PutRequest") or {}).get("Item") or (r.get("DeleteRequest") or {}).get("Key")
    else:
        yield params.get("TableName"), params.get("Item") or params.get("Key")


def _remember_images(handler):
    import copy
    import time

    from moto.dynamodb.models.dynamo_type import DynamoType

    params = getattr(handler, "params", None) or {}
    now = time.monotonic()
    backend = dynamodb_backends[handler.current_account][handler.region]
    for table_name, key in _written_keys(params):
        table = backend.tables.get(table_name)
        if table is None or not key or table.hash_key_attr not in key:
            continue
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
        try:
            current = table.get_item(hash_key, range_key)
        except Exception:  # noqa: BLE001: a key moto refuses is refused by the write too
            continue
        marker = (table_name, str(hash_key.value), str(range_key.value) if range_key else None)
        _history.setdefault(marker, []).append((now, copy.deepcopy(current)))


def _lagged_items(table):
    """The table's items as an index saw them INDEX_LAG seconds ago."""
    import time

    cutoff = time.monotonic() - INDEX_LAG
    for marker in [m for m, writes in _history.items() if writes[-1][0] <= cutoff]:
        del _history[marker]
    current = {}
    for item in table.all_items():
        range_value = str(item.range_key.value) if item.range_key else None
        current[(table.name, str(item.hash_key.value), range_value)] = item
    for marker, writes in _history.items():
        if marker[0] != table.name:
            continue
        before = next((image for at, image in writes if at > cutoff), None)
        if any(at > cutoff for at, _ in writes):
            if before is None:
                current.pop(marker, None)
            else:
                current[marker] = before
    return list(current.values())


def _atomic_call_action(self):
    with _dynamodb:
        if INDEX_LAG > 0 and self._get_action() in _WRITES:
            _remember_images(self)
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action


# moto's server picks the backend of each request under one lock, and for that lists moto's
# modules on disk (a directory walk per request): every request of every thread queued
# behind the walk. The backend of a host never changes: it is remembered.
_backend_for_host = DomainDispatcherApplication.get_backend_for_host
_backends = {}


def _remembered_backend_for_host(self, host):
    if host not in _backends:
        _backends[host] = _backend_for_host(self, host)
    return _backends[host]


DomainDispatcherApplication.get_backend_for_host = _remembered_backend_for_host


# moto reads the clock through datetime arithmetic, twice a message, for every message of a
# queue on every receive (and a long poll re-reads every second): with thousands of retry
# tasks waiting out their delays, the pollers' receives took most of the emulator's time.
# The same comparisons, on one read of the clock.
def _now_ms():
    return time.time() * 1000.0


Message.visible = property(lambda self: _now_ms() > self.visible_at)
Message.delayed = property(lambda self: _now_ms() < self.delayed_until)


def _receivable(queue):
    now = _now_ms()
    return [m for m in queue._messages if now > m.visible_at and now >= m.delayed_until]


Queue.messages = property(_receivable)


class _LazyAttributes(Mapping):
    """A queue's attributes, each computed when asked: moto computes all of them (counting
    every message of the queue) to read one, on every message sent."""

    def __init__(self, queue):
        self._queue = queue

    def _names(self):
        q = self._queue
        names = list(q.BASE_ATTRIBUTES)
        if q.fifo_queue:
            names += q.FIFO_ATTRIBUTES
        if q.kms_master_key_id:
            names += q.KMS_ATTRIBUTES
        if q.policy:
            names.append("Policy")
        if q.redrive_policy:
            names.append("RedrivePolicy")
        return names

    def __getitem__(self, name):
        q = self._queue
        if name not in self._names():
            raise KeyError(name)
        if name == "Policy":
            return q.policy
        if name == "RedrivePolicy":
            return json.dumps(q.redrive_policy)
        value = getattr(q, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())


Queue.attributes = property(_LazyAttributes)


def _within_retention(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _within_retention

_query = Table.query


def _query_one_partition(self, hash_key, *args, **kwargs):
    # Table.query(hash_key, range_comparison, range_objs, limit, exclusive_start_key,
    #             scan_index_forward, projection_expressions, index_name, ...)
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    if index_name and INDEX_LAG > 0:
        lagged = _lagged_items(self)
        self.all_items = lambda: lagged
        try:
            return _query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items
    if index_name or hash_key is None:
        return _query(self, hash_key, *args, **kwargs)
    partition = self.items[hash_key] if hash_key in self.items else {}
    items = list(partition.values()) if isinstance(partition, dict) else [partition]
    # Under the DynamoDB lock: no other request sees the table while this one reads it.
    self.all_items = lambda: items
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


Table.query = _query_one_partition

# ---------------------------------------------------------------------------------------
# IAM: principals.

ADMIN_USER = "webhooks-local-admin"
ADMIN_ACCESS_KEY = "AKIAWEBHOOKSLOCAL000"
ADMIN_SECRET_KEY = "webhooks-local-administrator-secret-0000"
ACCOUNT = "123456789012"
ENFORCE = os.environ.get("WEBHOOKS_EMULATOR_IAM", "on").lower() not in ("off", "0", "false")
_principals = threading.Lock()


def _iam():
    return iam_backends[ACCOUNT]["aws"]


def _make_user(name, policy):
    """An IAM user whose one inline policy is `policy`, and its access key: the one it has
    (a second stack on the same table, such as a second `webhooks-local`, acts as the same
    principals), or a new one."""
    with _principals:
        backend = _iam()
        if name not in backend.users:
            backend.create_user(region_name="us-east-1", user_name=name)
        user = backend.users[name]
        for old in list(user.policies):
            user.delete_policy(old)
        backend.put_user_policy(name, "template", json.dumps(policy))
        keys = [k for k in user.access_keys if k.status == "Active"]
        return user, keys[0] if keys else backend.create_access_key(name)


def _bootstrap_admin():
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    _, key = _make_user(ADMIN_USER, policy)
    backend = _iam()
    backend.access_keys.pop(key.access_key_id, None)
    key.access_key_id = ADMIN_ACCESS_KEY
    key.secret_access_key = ADMIN_SECRET_KEY
    backend.access_keys[ADMIN_ACCESS_KEY] = key


def _principals_endpoint(request):
    """`POST /_webhooks/principals` {"name", "policy"}: a function's own principal."""
    try:
        asked = json.loads(request.get_data(as_text=True))
        user, key = _make_user(asked["name"], asked["policy"])
    except Exception as e:  # noqa: BLE001: any bad request is a 400 naming why
        return Response(json.dumps({"error": str(e)}), status=400, content_type="application/json")
    body = {"arn": user.arn, "access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}
    return Response(json.dumps(body), status=200, content_type="application/json")


def _fast_user_key(self, account_id, partition, access_key_id, headers):
    # moto looks a key up by walking every user's keys on every request; the backend keeps
    # them by id.
    self.account_id = account_id
    self.partition = partition
    key = self.backend.access_keys.get(access_key_id)
    if key is None or key.user_name is None or key.status != "Active":
        raise access_control.CreateAccessKeyFailure(reason="InvalidId")
    if "X-Amz-Security-Token" in headers:
        raise access_control.CreateAccessKeyFailure(reason="InvalidToken")
    self._owner_user_name = key.user_name
    self._access_key_id = access_key_id
    self._secret_access_key = key.secret_access_key


access_control.IAMUserAccessKey.__init__ = _fast_user_key

# ---------------------------------------------------------------------------------------
# IAM: evaluation.


def _listed(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _like(pattern, value, case=True):
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _actions_match(statement, action):
    if "NotAction" in statement:
        return not any(_like(p, action, case=False) for p in _listed(statement["NotAction"]))
    return any(_like(p, action, case=False) for p in _listed(statement.get("Action")))


def _resources_match(statement, resource):
    if "NotResource" in statement:
        return not any(_like(p, resource) for p in _listed(statement["NotResource"]))
    if "Resource" not in statement:
        return True  # a resource policy's statement is about its own resource
    return any(_like(p, resource) for p in _listed(statement["Resource"]))


def _principal_matches(statement, principal_arn):
    given = statement.get("Principal")
    if given == "*":
        return True
    if not isinstance(given, dict):
        return False
    for arn in _listed(given.get("AWS")):
        if arn == "*" or arn == principal_arn or arn == f"arn:aws:iam::{ACCOUNT}:root":
            return True
    return False


_OPERATORS = {
    "StringEquals": (lambda e, v: e == v, False),
    "StringNotEquals": (lambda e, v: e == v, True),
    "StringEqualsIgnoreCase": (lambda e, v: e.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda e, v: e.lower() == v.lower(), True),
    "StringLike": (lambda e, v: _like(e, v), False),
    "StringNotLike": (lambda e, v: _like(e, v), True),
    "ArnEquals": (lambda e, v: e == v, False),
    "ArnNotEquals": (lambda e, v: e == v, True),
    "ArnLike": (lambda e, v: _like(e, v), False),
    "ArnNotLike": (lambda e, v: _like(e, v), True),
    "Bool": (lambda e, v: str(e).lower() == str(v).lower(), False),
}


def _condition_holds(block, context):
    """A statement's Condition block against the request's context (values are lists)."""
    for operator, tests in (block or {}).items():
        qualifier = None
        if ":" in operator:
            qualifier, operator = operator.split(":", 1)
        if_exists = operator.endswith("IfExists")
        if if_exists:
            operator = operator[: -len("IfExists")]
        if operator == "Null":
            for key, expected in tests.items():
                absent = key not in context
                if any(str(e).lower() == "true" for e in _listed(expected)) != absent:
                    return False
            continue
        if operator not in _OPERATORS:
            return False  # an operator this emulator does not know never matches
        match, negated = _OPERATORS[operator]
        for key, expected in tests.items():
            expected = [str(e) for e in _listed(expected)]
            values = context.get(key)
            if values is None:
                if qualifier == "ForAllValues" or if_exists or negated:
                    continue
                return False
            hit = [any(match(e, v) for e in expected) for v in values]
            if qualifier == "ForAllValues":
                ok = all((not h) if negated else h for h in hit)
            elif qualifier == "ForAnyValue":
                ok = any((not h) if negated else h for h in hit)
            else:
                ok = (not any(hit)) if negated else any(hit)
            if not ok:
                return False
    return True


def _statements(policies):
    for document in policies:
        if not isinstance(document, dict):
            document = json.loads(document)
        for statement in _listed(document.get("Statement")):
            yield statement


def _identity_policies(access_key):
    documents = []
    for policy in access_key.collect_policies():
        documents.append(access_control.IAMPolicy(policy)._policy_json)
    return documents


def _decide(principal_arn, identity, resource_policy, ask):
    """"allow", or why not."""
    action, resource, context = ask
    allowed = False
    for statement in _statements(identity):
        if _actions_match(statement, action) and _resources_match(statement, resource) and _condition_holds(
            statement.get("Condition"), context
        ):
            if statement.get("Effect") == "Deny":
                return "an explicit deny in an identity-based policy"
            allowed = True
    for statement in _statements([resource_policy] if resource_policy else []):
        if (
            _principal_matches(statement, principal_arn)
            and _actions_match(statement, action)
            and _resources_match(statement, resource)
            and _condition_holds(statement.get("Condition"), context)
        ):
            if statement.get("Effect") == "Deny":
                return "an explicit deny in a resource-based policy"
            allowed = True
    return "allow" if allowed else f"no identity-based policy allows the {action} action"


# ---------------------------------------------------------------------------------------
# What each request asks: (action, resource, context) per thing it touches.

_TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}


def _attribute_text(value):
    if isinstance(value, dict):
        for kind in ("S", "N", "B"):
            if kind in value:
                return str(value[kind])
    return str(value)


def _dynamodb_asks(handler, region, action):
    body = getattr(handler, "params", None) or handler.body
    if isinstance(body, (str, bytes)):
        body = json.loads(body or "{}")
    backend = dynamodb_backends[ACCOUNT][region]

    def arn(table, index=None):
        base = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}"
        return f"{base}/index/{index}" if index else base

    def hash_attr(table, index=None):
        found = backend.tables.get(table)
        if found is None:
            return None
        if index:
            for i in found.global_indexes + found.indexes:
                if i.name == index:
                    return next((k["AttributeName"] for k in i.schema if k["KeyType"] == "HASH"), None)
            return None
        return found.hash_key_attr

    def leading(table, items, index=None):
        attr = hash_attr(table, index)
        return [_attribute_text(item[attr]) for item in items if attr and attr in item]

    def ask(name, table, keys, index=None):
        return (f"dynamodb:{name}", arn(table, index), {"dynamodb:LeadingKeys": keys})

    if action in ("GetItem", "DeleteItem", "UpdateItem"):
        table = body.get("TableName")
        return [ask(action, table, leading(table, [body.get("Key") or {}]))]
    if action == "PutItem":
        table = body.get("TableName")
        return [ask(action, table, leading(table, [body.get("Item") or {}]))]
    if action == "Query":
        table, index = body.get("TableName"), body.get("IndexName")
        attr = hash_attr(table, index)
        names = body.get("ExpressionAttributeNames") or {}
        values = body.get("ExpressionAttributeValues") or {}
        keys = []
        for name, placeholder in re.findall(r"([#\w]+)\s*=\s*(:\w+)", body.get("KeyConditionExpression") or ""):
            if names.get(name, name) == attr and placeholder in values:
                keys.append(_attribute_text(values[placeholder]))
        return [ask("Query", table, keys, index)]
    if action == "Scan":
        table = body.get("TableName")
        return [("dynamodb:Scan", arn(table, body.get("IndexName")), {})]
    if action in ("BatchGetItem", "BatchWriteItem"):
        asks = []
        for table, requests in (body.get("RequestItems") or {}).items():
            if action == "BatchGetItem":
                items = requests.get("Keys") or []
            else:
                items = [
                    (r.get("PutRequest") or {}).get("Item") or (r.get("DeleteRequest") or {}).get("Key") or {}
                    for r in requests
                ]
            asks.append(ask(action, table, leading(table, items)))
        return asks
    if action in ("TransactWriteItems", "TransactGetItems"):
        asks = []
        for entry in body.get("TransactItems") or []:
            for kind, request in entry.items():
                name = "GetItem" if kind == "Get" else _TRANSACT_ACTIONS.get(kind, kind)
                table = request.get("TableName")
                item = request.get("Item") if kind == "Put" else request.get("Key")
                asks.append(ask(name, table, leading(table, [item or {}])))
        return asks
    table = body.get("TableName")
    return [(f"dynamodb:{action}", arn(table) if table else "*", {})]


def _kms_asks(handler, region, action):
    key_id = handler._get_param("KeyId")
    resource = "*"
    if key_id:
        try:
            resource = kms_backends[ACCOUNT][region].describe_key(key_id).arn
        except Exception:  # noqa: BLE001: an unknown key is the service's own error
            resource = f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"
    return [(f"kms:{action}", resource, {})]


_SQS_BATCHES = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs_policy(handler, region):
    try:
        queue = sqs_backends[ACCOUNT][region].get_queue(handler._get_queue_name())
    except Exception:  # noqa: BLE001: no such queue, no policy
        return None
    return queue.policy


class _JsonAccessDenied(JsonRESTError):
    code = 400

    def __init__(self, message):
        super().__init__("AccessDeniedException", message)


class _QueryAccessDenied(AccessDeniedError):
    def __init__(self, message):
        super(AccessDeniedError, self).__init__("AccessDenied", message)


def _authenticate_and_authorize(self, iam_request_cls, resource="*"):
    if not ENFORCE:
        return
    if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return
    from urllib.parse import urlparse

    parsed_url = urlparse(self.uri)
    path = parsed_url.path + ("?" + parsed_url.query if parsed_url.query else "")
    if "Authorization" not in self.headers:
        raise _JsonAccessDenied("Request is missing Authentication Token")
    iam_request = iam_request_cls(
        account_id=self.current_account,
        method=self.method,
        path=path,
        data=self.data,
        body=self.raw_body,
        headers=self.headers,
        action=self._get_action(),
    )
    iam_request.check_signature()
    access_key = iam_request._access_key
    service, region = iam_request._service, iam_request._region
    action = self._get_action()
    resource_policy = None
    if service == "dynamodb":
        asks = _dynamodb_asks(self, region, action)
    elif service == "kms":
        asks = _kms_asks(self, region, action)
    elif service == "sqs":
        asks = [(f"sqs:{_SQS_BATCHES.get(action, action)}", resource, {})]
        resource_policy = _sqs_policy(self, region)
    elif service == "sts" and action == "GetCallerIdentity":
        return
    else:
        asks = [(f"{service}:{action}", resource, {})]
    principal_arn = access_key.arn
    identity = _identity_policies(access_key)
    for act, res, context in asks:
        context = dict(context)
        context["aws:PrincipalArn"] = [principal_arn]
        context["aws:PrincipalAccount"] = [ACCOUNT]
        verdict = _decide(principal_arn, identity, resource_policy, (act, res, context))
        if verdict != "allow":
            message = f"User: {principal_arn} is not authorized to perform: {act} on resource: {res} because {verdict}"
            print(f"denied: {message}", file=sys.stderr, flush=True)
            content_type = self.headers.get("Content-Type", "")
            if "json" in content_type:
                raise _JsonAccessDenied(message)
            raise _QueryAccessDenied(message)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize

# ---------------------------------------------------------------------------------------
# The server.


def main(argv):
    # One line per request is moto's default; the log keeps denials and errors instead.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    if ENFORCE:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        _bootstrap_admin()
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/_webhooks/principals" and environ.get("REQUEST_METHOD") == "POST":
            return _principals_endpoint(Request(environ))(environ, start_response)
        return moto_app(environ, start_response)

    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main(sys.argv[1:])
