//! Bedrock Converse — not implemented yet: issue 4 fills this module in. The registry does not route
//! any provider here until it is.

use crate::config::DeploymentConfig;
use crate::errors::Error;
use crate::types::{ChatRequest, ChatResponse};

use super::{Endpoint, StreamParser, WireFormat};

pub struct Bedrock;

impl WireFormat for Bedrock {
    fn endpoint(
        &self,
        _d: &DeploymentConfig,
        _max_output_tokens: Option<u64>,
    ) -> Result<Endpoint, String> {
        Err("Bedrock Converse: not implemented yet".into())
    }
    fn request_body(
        &self,
        _ep: &Endpoint,
        _req: &ChatRequest,
        _stream: bool,
    ) -> Result<Vec<u8>, Error> {
        unreachable!("no endpoint is ever built")
    }
    fn parse_response(&self, _ep: &Endpoint, _body: &[u8]) -> Result<ChatResponse, Error> {
        unreachable!("no endpoint is ever built")
    }
    fn parse_error(&self, _ep: &Endpoint, _http_status: u16, _body: &[u8]) -> Error {
        unreachable!("no endpoint is ever built")
    }
    fn stream_parser(&self, _ep: &Endpoint) -> Box<dyn StreamParser> {
        unreachable!("no endpoint is ever built")
    }
}
