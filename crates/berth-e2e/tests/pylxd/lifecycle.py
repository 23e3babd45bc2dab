"""pylxd against berthd: create, start, exec, stop, delete a container; stateful stop
and start of a checkpointable one keep its processes.

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

config = {
    "name": "ckpylxd",
    "source": {"type": "image", "alias": alias},
    "config": {"migration.stateful": "true"},
}
inst = client.instances.create(config, wait=True)
inst.start(wait=True)
# Its own session: one left in the exec's session cannot be checkpointed (as with LXD).
script = "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"
result = inst.execute(["sh", "-c", script])
pid = result.stdout.strip()
assert pid.isdigit(), repr(result.stdout)


def set_state(action, stateful):
    """pylxd's stop()/start() send no `stateful`: its raw API does."""
    body = {"action": action, "timeout": 30, "force": False, "stateful": stateful}
    r = inst.api.state.put(json=body)
    client.operations.wait_for_operation(r.json()["operation"])


set_state("stop", True)
inst = client.instances.get("ckpylxd")
assert inst.status == "Stopped" and inst.stateful, (inst.status, inst.stateful)
set_state("start", True)
inst = client.instances.get("ckpylxd")
assert inst.status == "Running" and not inst.stateful, (inst.status, inst.stateful)
result = inst.execute(["kill", "-0", pid])
assert result.exit_code == 0, ("the process survived", pid, result)
inst.stop(wait=True, force=True)
inst.delete(wait=True)
print("pylxd ok")
