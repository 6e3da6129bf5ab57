//! Anthropic Messages API (placeholder until the real module lands).

use std::collections::VecDeque;

use super::{Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::Error;
use crate::types::{ChatChunk, ChatRequest, ChatResponse};

pub struct Anthropic;

impl WireFormat for Anthropic {
    fn endpoint(&self, _d: &DeploymentConfig, _m: Option<u64>) -> Result<Endpoint, String> {
        Err("ANTHROPIC is not implemented yet".into())
    }
    fn request_body(&self, _ep: &Endpoint, _req: &ChatRequest, _stream: bool) -> Result<Vec<u8>, Error> {
        unreachable!()
    }
    fn parse_response(&self, _ep: &Endpoint, _body: &[u8]) -> Result<ChatResponse, Error> {
        unreachable!()
    }
    fn parse_error(&self, _ep: &Endpoint, _s: u16, _body: &[u8]) -> Error {
        unreachable!()
    }
    fn stream_parser(&self, _ep: &Endpoint) -> Box<dyn StreamParser> {
        struct Never;
        impl StreamParser for Never {
            fn feed(&mut self, _b: &[u8], _o: &mut VecDeque<ChatChunk>) -> Result<bool, Error> {
                Ok(true)
            }
            fn finish(&mut self, _o: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
                Ok(())
            }
        }
        Box::new(Never)
    }
}
