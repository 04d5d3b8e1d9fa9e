//! What this machine offers a worker by default: its cores, its memory
//! and its NVIDIA GPUs.

use std::path::Path;
use std::process::Command;

/// Cores of this machine.
pub(crate) fn cpus() -> f64 {
    std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
}

/// Bytes of memory of this machine (from /proc/meminfo), or 0 if unknown.
pub(crate) fn memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// NVIDIA GPUs this process may use: the devices `CUDA_VISIBLE_DEVICES`
/// names when it is set, else the `GPU n: ...` lines of `nvidia-smi -L`
/// where it runs, else the entries of `/proc/driver/nvidia/gpus`; 0 when
/// none of these is there.
pub(crate) fn nvidia_gpus() -> u32 {
    if let Ok(visible) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return count_visible(&visible);
    }
    let listed = Command::new("nvidia-smi").arg("-L").output().ok().filter(|output| output.status.success());
    if let Some(output) = listed {
        return count_listed_gpus(&String::from_utf8_lossy(&output.stdout));
    }
    count_entries(Path::new("/proc/driver/nvidia/gpus"))
}

/// Devices named in a `CUDA_VISIBLE_DEVICES` list; CUDA stops at the first
/// entry that is not a device (`-1`, `none`, an empty one).
fn count_visible(list: &str) -> u32 {
    list.split(',').map(str::trim).take_while(|entry| !entry.is_empty() && !entry.starts_with('-') && *entry != "none").count() as u32
}

fn count_listed_gpus(listing: &str) -> u32 {
    listing.lines().filter(|line| line.trim_start().starts_with("GPU ")).count() as u32
}

fn count_entries(dir: &Path) -> u32 {
    std::fs::read_dir(dir).map(|entries| entries.filter(|entry| entry.is_ok()).count() as u32).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_gpu_lines_of_nvidia_smi() {
        let listing = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)
  MIG 1g.10gb     Device  0: (UUID: MIG-3)
";
        assert_eq!(count_listed_gpus(listing), 2);
        assert_eq!(count_listed_gpus(""), 0);
    }

    #[test]
    fn counts_the_devices_cuda_may_see() {
        assert_eq!(count_visible("0,1"), 2);
        assert_eq!(count_visible("GPU-8f3c,GPU-1a2b,GPU-77d0"), 3);
        assert_eq!(count_visible(""), 0);
        assert_eq!(count_visible("-1"), 0);
        assert_eq!(count_visible("0,-1,2"), 1, "CUDA stops at the first invalid entry");
    }

    #[test]
    fn counts_the_entries_of_the_driver_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count_entries(&dir.path().join("absent")), 0);
        for bus in ["0000:17:00.0", "0000:65:00.0"] {
            std::fs::create_dir(dir.path().join(bus)).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(count_entries(dir.path()), 2);
    }
}
