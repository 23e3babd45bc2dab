"""pylxd against berthd: profiles, devices on a running container, snapshots and
projects.

Run by the e2e test `pylxd_drives_configuration` with LXD_DIR pointing at a test daemon
and the alias of an imported busybox image as the first argument.
"""
import os
import sys

import pylxd

alias = sys.argv[1]
socket = os.path.join(os.environ["LXD_DIR"], "unix.socket")
client = pylxd.Client(endpoint=socket)

# Profiles: created, expanded into an instance, changed.
prof = client.profiles.create("limited", config={"limits.processes": "200"})
inst = client.instances.create(
    {
        "name": "cfg",
        "source": {"type": "image", "alias": alias},
        "profiles": ["default", "limited"],
    },
    wait=True,
)
inst.start(wait=True)
inst.sync()
assert inst.expanded_config["limits.processes"] == "200", inst.expanded_config
# (pylxd sends what was assigned: a dict changed in place is not seen as changed.)
prof.config = {"limits.processes": "300"}
prof.save(wait=True)
inst = client.instances.get("cfg")
assert inst.expanded_config["limits.processes"] == "300", inst.expanded_config

# A unix-char device added to the running container appears at once.
inst.devices = dict(
    inst.devices,
    zero={"type": "unix-char", "source": "/dev/zero", "path": "/dev/pyzero"},
)
inst.save(wait=True)
result = inst.execute(["sh", "-c", "test -c /dev/pyzero && echo there"])
assert result.stdout == "there\n", repr(result.stdout)

# Snapshots: taken, restored (the file made after goes), renamed, deleted.
snap = inst.snapshots.create("before", wait=True)
inst.execute(["touch", "/root/after"])
inst.restore_snapshot("before", wait=True)
result = inst.execute(["sh", "-c", "test -e /root/after && echo kept || echo gone"])
assert result.stdout == "gone\n", repr(result.stdout)
assert [s.name for s in inst.snapshots.all()] == ["before"]
snap = inst.snapshots.get("before")
snap.rename("renamed", wait=True)
inst.snapshots.get("renamed").delete(wait=True)
assert inst.snapshots.all() == []
inst.stop(wait=True, force=True)
inst.delete(wait=True)
prof.delete()

# Projects: an instance in one is not in default.
client.projects.create(
    "pyproj",
    config={"features.images": "false", "features.profiles": "false"},
)
inproj = pylxd.Client(endpoint=socket, project="pyproj")
made = inproj.instances.create(
    {"name": "inproj", "source": {"type": "image", "alias": alias}}, wait=True
)
assert inproj.instances.exists("inproj")
assert not client.instances.exists("inproj")
made.delete(wait=True)
client.projects.get("pyproj").delete()
print("pylxd config ok")
