//! `--device` as a tch device, through xlmc-torch-device (libtorch's CUDA library loaded on demand).

use anyhow::Context;

use crate::cli::Device;

/// The tch device for a CLI `--device`; `cuda` fails with the reason when no GPU is usable.
pub fn select(device: Device) -> anyhow::Result<tch::Device> {
    xlmc_torch_device::select(device == Device::Cuda).context("--device cuda")
}
