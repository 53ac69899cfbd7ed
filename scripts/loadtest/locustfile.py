"""The original system's Locust scenario, unchanged in shape.

50 users, each posting orders back to back (no think time) for one unit of a
random product among 8001-8010 at 9.99. Seed the products first with
``scripts/loadtest/seed.sh``.

    locust -f scripts/loadtest/locustfile.py --headless -u 50 -r 50 -t 5m \
        --host http://127.0.0.1:8081

Locust measures POST /orders only (acceptance: the order and its saga are
stored and the first command is queued). It cannot see sagas finish; for
end-to-end completion use ``dop bench``.
"""

import random

from locust import FastHttpUser, constant, task

PRODUCT_IDS = range(8001, 8011)


class OrderUser(FastHttpUser):
    host = "http://127.0.0.1:8081"
    wait_time = constant(0)

    @task
    def place_order(self):
        body = {
            "user_id": random.randint(1, 10_000),
            "product_id": random.choice(PRODUCT_IDS),
            "quantity": 1,
            "total_amount": 9.99,
        }
        with self.client.post("/orders", json=body, name="/orders", catch_response=True) as resp:
            if resp.status_code != 201:
                resp.failure(f"status {resp.status_code}: {resp.text[:200]}")
