//! `GET /1.0/resources`: CPU, memory, disks, load and system identity read from `/proc` and
//! `/sys` under a given root.

use std::collections::BTreeMap;
use std::path::Path;

use berth_api::resources::{
    Resources, ResourcesCpu, ResourcesCpuCache, ResourcesCpuCore, ResourcesCpuSocket,
    ResourcesCpuThread, ResourcesLoad, ResourcesMemory, ResourcesStorage, ResourcesStorageDisk,
    ResourcesStorageDiskPartition, ResourcesSystem,
};

use super::{read_trimmed, read_u64};

/// Reads the whole inventory.
pub fn read(root: &Path) -> Resources {
    let cpu = cpu(root);
    let hypervisor = cpu
        .sockets
        .iter()
        .flat_map(|s| &s.cores)
        .any(|c| c.flags.iter().any(|f| f == "hypervisor"));
    Resources {
        cpu,
        memory: memory(root),
        storage: storage(root),
        load: load(root),
        system: system(root, hypervisor),
        ..Default::default()
    }
}

/// One `processor` block of /proc/cpuinfo.
#[derive(Debug, Default)]
struct CpuInfo {
    vendor: String,
    model: String,
    mhz: u64,
    flags: Vec<String>,
}

fn cpuinfo(root: &Path) -> BTreeMap<i64, CpuInfo> {
    let text = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut id = None;
        let mut info = CpuInfo::default();
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "processor" => id = v.parse().ok(),
                "vendor_id" => info.vendor = v.to_owned(),
                "model name" => info.model = v.to_owned(),
                "cpu MHz" => info.mhz = v.parse::<f64>().map(|f| f as u64).unwrap_or(0),
                "flags" => info.flags = v.split_whitespace().map(str::to_owned).collect(),
                _ => {}
            }
        }
        if let Some(id) = id {
            out.insert(id, info);
        }
    }
    out
}

fn cpu_cache(dir: &Path) -> Vec<ResourcesCpuCache> {
    let mut caches = Vec::new();
    for i in 0.. {
        let idx = dir.join(format!("cache/index{i}"));
        if !idx.exists() {
            break;
        }
        let size = read_trimmed(&idx.join("size")).unwrap_or_default();
        let size = match size.strip_suffix('K') {
            Some(k) => k.parse::<u64>().unwrap_or(0) * 1024,
            None => size.parse().unwrap_or(0),
        };
        caches.push(ResourcesCpuCache {
            level: read_u64(&idx.join("level")).unwrap_or(0),
            kind: read_trimmed(&idx.join("type")).unwrap_or_default(),
            size,
        });
    }
    caches
}

fn numa_node(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
        .unwrap_or(0)
}

fn cpu(root: &Path) -> ResourcesCpu {
    let info = cpuinfo(root);
    let sys = root.join("sys/devices/system/cpu");
    let mut sockets: BTreeMap<u64, ResourcesCpuSocket> = BTreeMap::new();
    let mut total = 0;
    let ids: Vec<i64> = if info.is_empty() {
        std::fs::read_dir(&sys)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
            .collect()
    } else {
        info.keys().copied().collect()
    };
    for id in ids {
        total += 1;
        let dir = sys.join(format!("cpu{id}"));
        let topo = dir.join("topology");
        let socket_id = read_u64(&topo.join("physical_package_id")).unwrap_or(0);
        let core_id = read_u64(&topo.join("core_id")).unwrap_or(id.unsigned_abs());
        let die = read_u64(&topo.join("die_id")).unwrap_or(0);
        let siblings = read_trimmed(&topo.join("thread_siblings_list")).unwrap_or_default();
        let thread = siblings
            .split(',')
            .flat_map(|r| match r.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                    (a..=b).collect::<Vec<i64>>()
                }
                None => r.parse().ok().into_iter().collect(),
            })
            .position(|c| c == id)
            .unwrap_or(0) as u64;
        let online = read_trimmed(&dir.join("online")).is_none_or(|s| s == "1");
        let ci = info.get(&id);
        let socket = sockets
            .entry(socket_id)
            .or_insert_with(|| ResourcesCpuSocket {
                name: ci.map(|c| c.model.clone()).unwrap_or_default(),
                vendor: ci.map(|c| c.vendor.clone()).unwrap_or_default(),
                socket: socket_id,
                cache: cpu_cache(&dir),
                frequency: ci.map(|c| c.mhz).unwrap_or(0),
                ..Default::default()
            });
        let core = match socket
            .cores
            .iter_mut()
            .position(|c| c.core == core_id && c.die == die)
        {
            Some(i) => &mut socket.cores[i],
            None => {
                socket.cores.push(ResourcesCpuCore {
                    core: core_id,
                    die,
                    frequency: ci.map(|c| c.mhz).unwrap_or(0),
                    flags: ci.map(|c| c.flags.clone()).unwrap_or_default(),
                    ..Default::default()
                });
                let last = socket.cores.len() - 1;
                &mut socket.cores[last]
            }
        };
        core.threads.push(ResourcesCpuThread {
            id,
            numa_node: numa_node(&dir),
            thread,
            online,
            isolated: false,
        });
    }
    ResourcesCpu {
        architecture: rustix::system::uname()
            .machine()
            .to_string_lossy()
            .into_owned(),
        sockets: sockets.into_values().collect(),
        total,
    }
}

fn memory(root: &Path) -> ResourcesMemory {
    let text = std::fs::read_to_string(root.join("proc/meminfo")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| {
                let mut parts = v.split_whitespace();
                let n: u64 = parts.next()?.parse().ok()?;
                Some(if parts.next() == Some("kB") {
                    n * 1024
                } else {
                    n
                })
            })
            .unwrap_or(0)
    };
    let total = field("MemTotal");
    let hp_total = field("HugePages_Total");
    ResourcesMemory {
        nodes: vec![],
        hugepages_total: hp_total,
        hugepages_used: hp_total.saturating_sub(field("HugePages_Free")),
        hugepages_size: field("Hugepagesize"),
        used: total.saturating_sub(field("MemAvailable")),
        total,
    }
}

fn storage(root: &Path) -> ResourcesStorage {
    let block = root.join("sys/block");
    let mut names: Vec<String> = std::fs::read_dir(&block)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut disks = Vec::new();
    for name in names {
        let dir = block.join(&name);
        // Virtual block devices (loop, ram, zram, dm) have no backing device.
        if !dir.join("device").exists() {
            continue;
        }
        let mut partitions = Vec::new();
        let mut entries: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&name))
            .collect();
        entries.sort();
        for part in entries {
            let pdir = dir.join(&part);
            let Some(number) = read_u64(&pdir.join("partition")) else {
                continue;
            };
            partitions.push(ResourcesStorageDiskPartition {
                id: part.clone(),
                device: read_trimmed(&pdir.join("dev")).unwrap_or_default(),
                read_only: read_u64(&pdir.join("ro")) == Some(1),
                size: read_u64(&pdir.join("size")).unwrap_or(0) * 512,
                partition: number,
            });
        }
        let kind = if name.starts_with("vd") {
            "virtio"
        } else if name.starts_with("nvme") {
            "nvme"
        } else if name.starts_with("sd") {
            "scsi"
        } else {
            ""
        };
        let rotational = read_u64(&dir.join("queue/rotational")) == Some(1);
        disks.push(ResourcesStorageDisk {
            id: name.clone(),
            device: read_trimmed(&dir.join("dev")).unwrap_or_default(),
            model: read_trimmed(&dir.join("device/model")).unwrap_or_default(),
            kind: kind.to_owned(),
            read_only: read_u64(&dir.join("ro")) == Some(1),
            size: read_u64(&dir.join("size")).unwrap_or(0) * 512,
            removable: read_u64(&dir.join("removable")) == Some(1),
            numa_node: 0,
            block_size: read_u64(&dir.join("queue/logical_block_size")).unwrap_or(512),
            // The kernel does not tell the speed; LXD reports 1 for "spinning, unknown".
            rpm: u64::from(rotational && kind != "virtio"),
            serial: read_trimmed(&dir.join("serial"))
                .or_else(|| read_trimmed(&dir.join("device/serial")))
                .unwrap_or_default(),
            partitions,
            ..Default::default()
        });
    }
    ResourcesStorage {
        total: disks.len() as u64,
        disks,
    }
}

fn load(root: &Path) -> ResourcesLoad {
    let text = read_trimmed(&root.join("proc/loadavg")).unwrap_or_default();
    let f: Vec<&str> = text.split_whitespace().collect();
    let avg = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ResourcesLoad {
        average_1min: avg(0),
        average_5min: avg(1),
        average_15min: avg(2),
        processes: f
            .get(3)
            .and_then(|v| v.split_once('/'))
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0),
    }
}

fn system(root: &Path, hypervisor: bool) -> ResourcesSystem {
    let dmi = root.join("sys/class/dmi/id");
    let get = |f: &str| read_trimmed(&dmi.join(f)).unwrap_or_default();
    ResourcesSystem {
        uuid: get("product_uuid"),
        vendor: get("sys_vendor"),
        product: get("product_name"),
        family: get("product_family"),
        version: get("product_version"),
        sku: get("product_sku"),
        serial: get("product_serial"),
        kind: if hypervisor {
            "virtual-machine"
        } else {
            "physical"
        }
        .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, content: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn reads_a_fake_host() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(
            r,
            "proc/cpuinfo",
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.136\nflags\t\t: fpu hypervisor\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.136\nflags\t\t: fpu hypervisor\n",
        );
        for (cpu, core) in [(0, 0), (1, 1)] {
            let t = format!("sys/devices/system/cpu/cpu{cpu}/topology");
            write(r, &format!("{t}/physical_package_id"), "0\n");
            write(r, &format!("{t}/core_id"), &format!("{core}\n"));
            write(r, &format!("{t}/thread_siblings_list"), &format!("{cpu}\n"));
        }
        write(r, "sys/devices/system/cpu/cpu0/cache/index0/level", "1\n");
        write(r, "sys/devices/system/cpu/cpu0/cache/index0/type", "Data\n");
        write(r, "sys/devices/system/cpu/cpu0/cache/index0/size", "32K\n");
        write(
            r,
            "proc/meminfo",
            "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\nHugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n",
        );
        write(r, "sys/block/vda/device/model", "QEMU disk\n");
        write(r, "sys/block/vda/size", "2048\n");
        write(r, "sys/block/vda/dev", "254:0\n");
        write(r, "sys/block/vda/ro", "0\n");
        write(r, "sys/block/vda/vda1/partition", "1\n");
        write(r, "sys/block/vda/vda1/size", "1024\n");
        write(r, "sys/block/loop0/size", "100\n");
        write(r, "proc/loadavg", "0.50 0.25 0.10 2/345 6789\n");

        let res = read(r);
        assert_eq!(res.cpu.total, 2);
        assert_eq!(res.cpu.sockets.len(), 1);
        let s = &res.cpu.sockets[0];
        assert_eq!(s.name, "AMD EPYC");
        assert_eq!(s.cores.len(), 2);
        assert_eq!(s.cache[0].size, 32 * 1024);
        assert_eq!(s.frequency, 2596);
        assert_eq!(res.memory.total, 1000 * 1024);
        assert_eq!(res.memory.used, 600 * 1024);
        assert_eq!(res.memory.hugepages_size, 2048 * 1024);
        assert_eq!(res.storage.total, 1, "loop devices are skipped");
        let d = &res.storage.disks[0];
        assert_eq!(
            (d.id.as_str(), d.size, d.kind.as_str()),
            ("vda", 2048 * 512, "virtio")
        );
        assert_eq!(d.partitions.len(), 1);
        assert_eq!(d.partitions[0].size, 1024 * 512);
        assert_eq!(res.load.processes, 345);
        assert_eq!(res.load.average_1min, 0.5);
        assert_eq!(res.system.kind, "virtual-machine");
    }
}
