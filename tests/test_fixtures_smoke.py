import psycopg


def test_postgres_fixture_is_real(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        v = conn.execute("select current_setting('server_version_num')::int").fetchone()[0]
    assert v >= 150000
