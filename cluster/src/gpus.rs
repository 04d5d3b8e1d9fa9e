//! Which GPU devices of a worker each applier uses: the device ordinals a
//! stateful UDF loads its model on.
//!
//! The head's ledger leases them when it places an applier, and the worker
//! hands them to the applier's UDF instances. An applier asking for whole
//! GPUs gets that many devices of its own; one asking for a fraction
//! shares a device with others: the fullest device that still has room
//! (the lowest ordinal of equals), so fractions pack onto as few devices as
//! possible and whole devices stay free for whole requests. Shares are
//! counted in thousandths of a device (a third is 333), so that fractions
//! add up exactly.
//!
//! How many devices a worker has is read off its machine by the process
//! that starts it; [`visible_device_count`] and [`listed_device_count`]
//! read the two reports that process finds (`CUDA_VISIBLE_DEVICES`,
//! `nvidia-smi -L`), without touching either.

/// Thousandths of a GPU.
const WHOLE: u32 = 1000;

/// Devices named in a `CUDA_VISIBLE_DEVICES` list (ordinals or UUIDs).
/// CUDA stops at the first entry that is not a device (`-1`, `none`, an
/// empty one), so this does too.
pub fn visible_device_count(list: &str) -> u32 {
    let devices = list.split(',').map(str::trim);
    devices.take_while(|entry| !entry.is_empty() && !entry.starts_with('-') && *entry != "none").count() as u32
}

/// Devices in the output of `nvidia-smi -L`: its `GPU n: ...` lines (MIG
/// instances, listed indented below their GPU, are not devices of their own).
pub fn listed_device_count(listing: &str) -> u32 {
    listing.lines().filter(|line| line.trim_start().starts_with("GPU ")).count() as u32
}

/// A worker's GPU devices and how much of each is reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevices {
    /// Thousandths reserved, by device ordinal.
    reserved: Vec<u32>,
}

/// What an applier holds: its device ordinals and its share of each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuLease {
    ordinals: Vec<u32>,
    share: u32,
}

impl GpuLease {
    /// The device ordinals, lowest first (empty when no GPU was asked for).
    pub fn ordinals(&self) -> &[u32] {
        &self.ordinals
    }
}

impl GpuDevices {
    /// `count` devices, ordinals 0 to `count - 1`, none reserved.
    pub fn new(count: u32) -> Self {
        Self { reserved: vec![0; count as usize] }
    }

    /// Reserves `gpus` (a UDF's per-applier hint: whole GPUs, or a fraction
    /// of one). `None` when the devices free now cannot hold it.
    pub fn reserve(&mut self, gpus: f64) -> Option<GpuLease> {
        if gpus.is_nan() || gpus <= 0.0 {
            return Some(GpuLease::default());
        }
        if gpus < 1.0 {
            let share = ((gpus * f64::from(WHOLE)).floor() as u32).clamp(1, WHOLE);
            let (ordinal, _) = self
                .reserved
                .iter()
                .enumerate()
                .filter(|(_, used)| **used + share <= WHOLE)
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?;
            self.reserved[ordinal] += share;
            return Some(GpuLease { ordinals: vec![ordinal as u32], share });
        }
        let wanted = gpus.ceil() as usize;
        let free: Vec<u32> = (0..self.reserved.len()).filter(|&i| self.reserved[i] == 0).map(|i| i as u32).take(wanted).collect();
        if free.len() < wanted {
            return None;
        }
        for &ordinal in &free {
            self.reserved[ordinal as usize] = WHOLE;
        }
        Some(GpuLease { ordinals: free, share: WHOLE })
    }

    /// Gives back what `lease` held.
    pub fn release(&mut self, lease: &GpuLease) {
        for &ordinal in &lease.ordinals {
            if let Some(used) = self.reserved.get_mut(ordinal as usize) {
                *used = used.saturating_sub(lease.share);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordinals(lease: Option<GpuLease>) -> Vec<u32> {
        lease.map(|l| l.ordinals).unwrap_or_else(|| panic!("no room"))
    }

    #[test]
    fn two_gpu_appliers_on_a_two_gpu_worker_get_different_devices() {
        let mut devices = GpuDevices::new(2);
        let first = devices.reserve(1.0);
        let second = devices.reserve(1.0);
        assert_eq!(ordinals(first), [0]);
        assert_eq!(ordinals(second), [1]);
        assert_eq!(devices.reserve(1.0), None, "both devices are taken");
    }

    #[test]
    fn a_released_device_is_reused() {
        let mut devices = GpuDevices::new(2);
        let first = devices.reserve(1.0).unwrap_or_else(|| panic!("no room"));
        let _second = devices.reserve(1.0);
        devices.release(&first);
        assert_eq!(ordinals(devices.reserve(1.0)), [0]);
    }

    #[test]
    fn whole_gpus_take_free_devices_and_fractions_share_one() {
        let mut devices = GpuDevices::new(4);
        assert_eq!(ordinals(devices.reserve(0.5)), [0]);
        assert_eq!(ordinals(devices.reserve(0.25)), [0]);
        assert_eq!(ordinals(devices.reserve(2.0)), [1, 2]);
        let third = devices.reserve(0.5);
        assert_eq!(ordinals(third.clone()), [3], "device 0 has only a quarter left");
        assert_eq!(ordinals(devices.reserve(0.25)), [0]);
        assert_eq!(devices.reserve(1.0), None);
        devices.release(&third.unwrap_or_default());
        assert_eq!(ordinals(devices.reserve(1.0)), [3]);
    }

    #[test]
    fn a_fraction_goes_to_the_fullest_device_with_room() {
        let mut devices = GpuDevices::new(2);
        let whole = devices.reserve(1.0).unwrap_or_else(|| panic!("no room"));
        assert_eq!(ordinals(devices.reserve(0.5)), [1]);
        devices.release(&whole);
        assert_eq!(ordinals(devices.reserve(0.5)), [1], "device 0 stays whole");
        assert_eq!(ordinals(devices.reserve(1.0)), [0]);
        let mut thirds = GpuDevices::new(1);
        for _ in 0..3 {
            assert_eq!(ordinals(thirds.reserve(1.0 / 3.0)), [0], "three thirds share one device");
        }
    }

    #[test]
    fn counts_the_gpu_lines_of_nvidia_smi() {
        let listing = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)
  MIG 1g.10gb     Device  0: (UUID: MIG-3)
";
        assert_eq!(listed_device_count(listing), 2);
        assert_eq!(listed_device_count(""), 0);
    }

    #[test]
    fn counts_the_devices_cuda_may_see() {
        assert_eq!(visible_device_count("0,1"), 2);
        assert_eq!(visible_device_count("GPU-8f3c,GPU-1a2b,GPU-77d0"), 3);
        assert_eq!(visible_device_count(""), 0);
        assert_eq!(visible_device_count("-1"), 0);
        assert_eq!(visible_device_count("0,-1,2"), 1, "CUDA stops at the first invalid entry");
    }

    #[test]
    fn no_gpu_asked_holds_no_device() {
        let mut devices = GpuDevices::new(0);
        assert_eq!(devices.reserve(0.0), Some(GpuLease::default()));
        assert_eq!(devices.reserve(1.0), None);
        assert_eq!(devices.reserve(0.5), None);
    }
}
