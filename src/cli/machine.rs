//! What this machine offers a worker by default: its cores, its memory
//! and its NVIDIA GPUs.

use std::path::Path;
use std::process::Command;

use leman_cluster::{listed_device_count, visible_device_count};

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
        return visible_device_count(&visible);
    }
    let listed = Command::new("nvidia-smi").arg("-L").output().ok().filter(|output| output.status.success());
    if let Some(output) = listed {
        return listed_device_count(&String::from_utf8_lossy(&output.stdout));
    }
    count_entries(Path::new("/proc/driver/nvidia/gpus"))
}

/// Entries of a directory, 0 when it cannot be read.
fn count_entries(dir: &Path) -> u32 {
    std::fs::read_dir(dir).map(|entries| entries.filter(|entry| entry.is_ok()).count() as u32).unwrap_or(0)
}
