"""Logs op.begin, works 50 ms, logs op.end; a kill aimed at the op must land between the two."""
import sys
import time

i = 0
print("worker.start", flush=True)
while True:
    i += 1
    sys.stdout.write(f"op.begin n={i}\n")
    sys.stdout.flush()
    time.sleep(0.05)
    sys.stdout.write(f"op.end n={i}\n")
    sys.stdout.flush()
    time.sleep(0.2)
