//! End-to-end tests, one module per area. They run the workspace's real binaries with an empty
//! environment, so they also prove that nothing needs exporting by hand.

mod binaries;
mod data;
mod export;
mod fastbpe;
mod grpc;
mod import_xlm;
mod libretranslate;
mod metrics;
mod onnx_runtime;
mod pipeline;
mod prometheus;
mod report;
mod scoring;
mod serving;
mod torch_stack;
mod train;
