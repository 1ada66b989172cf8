"""Several fastcore instances behind nginx, as users scale it (issue 18 item 9, README "Deploying"):
each instance on its own loopback address (127.0.0.2, 127.0.0.3: only 127.0.0.0/8), nginx balancing
them. While a client keeps sending requests, each instance in turn gets SIGTERM (a graceful drain:
its listener closes, in-flight requests finish) and is started again on the same address: the
client must see no failed request, and both the old and the new processes must have answered."""
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from conftest import child_env

APP = '''
import os

def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

ADDRESSES = ("127.0.0.2", "127.0.0.3")


def free_port_on(address):
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def start_instance(app_dir, address, port):
    process = subprocess.Popen(
        [sys.executable, "-m", "fastcore", "balanced_app:app", "--app-dir", str(app_dir), "--host", address,
         "--port", str(port), "--shutdown-timeout", "5", "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return process
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the instance did not start"
            time.sleep(0.02)


def stop_instance(process):
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(15)
    process.stderr.close()
    return returncode


def test_a_rolling_restart_behind_nginx_fails_no_request(nginx, tmp_path):
    (tmp_path / "balanced_app.py").write_text(APP)
    ports = [free_port_on(address) for address in ADDRESSES]
    instances = [start_instance(tmp_path, address, port) for address, port in zip(ADDRESSES, ports)]
    # max_fails=0: nginx never marks an instance down for a while; a refused connection is simply
    # retried on the other one (proxy_next_upstream error, nginx's default for GET).
    proxy_port = nginx(*(f"{address}:{port}" for address, port in zip(ADDRESSES, ports)),
                       upstream_options=" max_fails=0")
    answered, failures, pids = [0], [], set()
    stop_client = threading.Event()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
        deadline = time.monotonic() + 40
        while not stop_client.is_set() and time.monotonic() < deadline and answered[0] < 20000:
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    failures.append(response.status)
                else:
                    pids.add(body)
                answered[0] += 1
            except (OSError, http.client.HTTPException) as error:   # nginx itself never goes away
                failures.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
        connection.close()

    thread = threading.Thread(target=client)
    thread.start()
    try:
        for index, (address, port) in enumerate(zip(ADDRESSES, ports)):
            mark = answered[0]
            while answered[0] < mark + 100 and thread.is_alive():
                time.sleep(0.01)
            assert stop_instance(instances[index]) == 0             # a clean, graceful stop
            mark = answered[0]
            while answered[0] < mark + 100 and thread.is_alive():   # served by the other alone
                time.sleep(0.01)
            instances[index] = start_instance(tmp_path, address, port)
        mark = answered[0]
        while answered[0] < mark + 100 and thread.is_alive():
            time.sleep(0.01)
    finally:
        stop_client.set()
        thread.join(45)
        for process in instances:
            if process.poll() is None:
                stop_instance(process)
    assert not thread.is_alive()
    assert failures == [], failures[:5]
    assert len(pids) == 4, pids                 # both first instances and both restarted ones answered
