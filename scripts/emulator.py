"""The local AWS emulator: moto's server, with each DynamoDB request made atomic, and
DynamoDB's query and SQS's receive kept from reading everything.

moto's server answers requests on many threads, and its DynamoDB backend is not safe for
that: a transaction snapshots the whole table, and when one of its conditions fails it puts
the snapshot back, undoing whatever another request wrote meanwhile (or bringing back an
item a third one had written and rolled back). Ten concurrent creates of one webhook URL
then left two webhooks in the table though nine were refused. DynamoDB never does that:
each item write and each transaction is atomic. One lock around every DynamoDB request
gives the emulator the same guarantee; SQS and KMS requests (an SQS long poll among them)
are not held by it.

moto's DynamoDB query on the table sorts every item of the table and then keeps those of
the asked partition: a list over sixteen delivery shards paid that sixteen times, and the
local stack slowed as its table grew. A query on the table now starts from the partition's
own items (the rest of moto's query, its order, filters, limits and pages, is unchanged);
index queries are left as they are.

moto's SQS receive reads the queue's retention period for every message it hands out by
computing all the queue's attributes, counting every message the queue holds three times
over. With a few hundred messages waiting out a delay (retries, deliveries held back by a
circuit breaker) that made every receive slow and kept the emulator's one core busy, and
the whole local stack with it; SQS itself has no such cost. The retention period is read
directly instead: the same answer, without the counts.

`make emulator` installs this file as `.venv/bin/webhooks-emulator`; it takes moto_server's
arguments (`-H 127.0.0.1 -p 4566`).
"""

import sys
import threading

from moto.core.utils import unix_time
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.sqs.models import SQSBackend

_dynamodb = threading.Lock()
_call_action = DynamoHandler.call_action


def _atomic_call_action(self):
    with _dynamodb:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action


def _within_retention(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _within_retention

_query = Table.query


def _query_one_partition(self, hash_key, *args, **kwargs):
    # Table.query(hash_key, range_comparison, range_objs, limit, exclusive_start_key,
    #             scan_index_forward, projection_expressions, index_name, ...)
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
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

if __name__ == "__main__":
    main(sys.argv[1:])
