"""`make run`: the shop and its payment gateway, each its own process, until interrupted.

1. Starts the gateway (``python -m examples.shop.gateway``) on ``GATEWAY_PORT`` (8001),
   and waits until it answers.
2. Applies the migrations, then serves the shop (``bastion run``, with its embedded
   worker in development) on ``HOST``:``PORT`` (127.0.0.1:8000).
3. When the shop stops (Ctrl-C, SIGTERM, or a crash), stops the gateway.

Both read ``SHOP_GATEWAY_WEBHOOK_SECRET``: the gateway signs its webhooks with it, the
shop checks them. When it is unset, a fresh one is generated for this run. The shop
reaches the gateway through ``SHOP_GATEWAY_URL``, the gateway the shop through
``SHOP_WEBHOOK_URL``; both are set here unless given.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from types import FrameType

import httpx

APP = "examples.shop.app:app"
CONFIG = "examples/shop/bastion.toml"
STARTUP_TIMEOUT_S = 15.0


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    host = env.get("HOST") or "127.0.0.1"
    port = env.get("PORT") or "8000"
    gateway_port = env.get("GATEWAY_PORT") or "8001"
    # A shop listening on every interface is still reached on loopback from here.
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    env.update(HOST=host, PORT=port, GATEWAY_PORT=gateway_port)
    env.setdefault("BASTION_CONFIG", CONFIG)
    if not env.get("SHOP_GATEWAY_WEBHOOK_SECRET"):
        env["SHOP_GATEWAY_WEBHOOK_SECRET"] = "whsec_" + secrets.token_urlsafe(32)
    env.setdefault("SHOP_GATEWAY_URL", f"http://127.0.0.1:{gateway_port}")
    env.setdefault("SHOP_WEBHOOK_URL", f"http://{reachable}:{port}/api/v1/webhooks/payments")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for_gateway(gateway: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while gateway.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_control", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the payment gateway did not start at {url}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds through main's `finally`, which stops both children.
    raise SystemExit(128 + signum)


def main() -> int:
    env = _environment()
    signal.signal(signal.SIGTERM, _on_sigterm)
    python = sys.executable
    gateway = subprocess.Popen(
        [python, "-m", "examples.shop.gateway", "--port", env["GATEWAY_PORT"]], env=env
    )
    shop: subprocess.Popen[bytes] | None = None
    try:
        _wait_for_gateway(gateway, env["SHOP_GATEWAY_URL"])
        print(
            f"payment gateway on {env['SHOP_GATEWAY_URL']}, webhooks to {env['SHOP_WEBHOOK_URL']}",
            flush=True,
        )
        subprocess.run([python, "-m", "bastion", "migrate", "up", APP], env=env, check=True)
        shop = subprocess.Popen(
            [python, "-m", "bastion", "run", APP, "--host", env["HOST"], "--port", env["PORT"]],
            env=env,
        )
        try:
            return shop.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the whole process group: the shop is shutting down already.
            return shop.wait()
    except subprocess.CalledProcessError as error:
        return error.returncode
    finally:
        if shop is not None:
            _stop(shop)
        _stop(gateway)


if __name__ == "__main__":
    raise SystemExit(main())
