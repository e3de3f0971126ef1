from piano_dist.connection import get_connection


def test_a_worker_pool_is_not_capped_at_redis_py_default(redis_url):
    # redis-py 8 caps pools at 100; a worker with many agents' modules and lock waiters
    # needs more (the 200-agent demo failed tasks with "Too many connections").
    connection = get_connection(redis_url)
    assert connection.connection_pool.max_connections >= 1000
    held = [connection.connection_pool.get_connection() for _ in range(150)]
    for c in held:
        connection.connection_pool.release(c)
