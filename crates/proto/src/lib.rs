//! xlmc's public gRPC API, `xlmc.v1`, generated from `proto/xlmc/v1/translate.proto`.
//!
//! - [`v1::translator_server::Translator`] is the trait the server implements;
//! - [`v1::translator_client::TranslatorClient`] is the client tests and the load generator use;
//! - [`FILE_DESCRIPTOR_SET`] feeds the gRPC reflection service, so `grpcurl` works without the
//!   `.proto` file at hand.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use xlmc_proto::v1::{translator_client::TranslatorClient, ListModelsRequest};
//! let mut client = TranslatorClient::connect("http://127.0.0.1:50051").await?;
//! let models = client.list_models(ListModelsRequest {}).await?.into_inner();
//! println!("{} models", models.models.len());
//! # Ok(()) }
//! ```

/// Messages and services of the `xlmc.v1` package.
#[allow(missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("xlmc.v1");
}

/// Encoded `FileDescriptorSet` of `xlmc.v1`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("xlmc_v1_descriptor");

/// Fully qualified name of the translation service, as health checks and reflection name it.
pub const TRANSLATOR_SERVICE: &str = "xlmc.v1.Translator";
