"""pylxd against berthd: create, start, exec, stop, delete a container.

Run by the e2e test `pylxd_drives_containers` with LXD_DIR pointing at a test daemon
and the alias of an imported busybox image as the first argument.
"""
import os
import sys

import pylxd

alias = sys.argv[1]
client = pylxd.Client(endpoint=os.path.join(os.environ["LXD_DIR"], "unix.socket"))
assert client.host_info["environment"]["server"] == "berth"
config = {"name": "viapylxd", "source": {"type": "image", "alias": alias}}
inst = client.instances.create(config, wait=True)
inst.start(wait=True)
inst.sync()
assert inst.status == "Running", inst.status
result = inst.execute(["sh", "-c", "echo out; echo err >&2; exit 4"])
assert result.exit_code == 4, result
assert result.stdout == "out\n", repr(result.stdout)
assert result.stderr == "err\n", repr(result.stderr)
result = inst.execute(["cat"], stdin_payload="piped in")
assert result.stdout == "piped in", repr(result.stdout)
inst.stop(wait=True, force=True)
inst.sync()
assert inst.status == "Stopped", inst.status
inst.delete(wait=True)
assert not client.instances.exists("viapylxd")
print("pylxd ok")
