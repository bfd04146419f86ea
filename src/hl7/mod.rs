//! The HL7 v2 front door (PIX/PDQ): its MLLP [`listener`], and the codecs it uses: MLLP
//! framing, message parsing, the mapping of the identity feed and queries to domain
//! requests, the answers, and replay detection.
//!
//! The codecs are conversion only, no policy and no I/O: the [`listener`] reads frames with
//! [`mllp::MllpDecoder`], turns each into a [`Request`] with [`read_request`] (or a
//! [`Rejection`] to answer with [`Rejection::answer`]), lets the application decide, and
//! writes the answer with [`ack`], [`rsp_k23`], [`rsp_k22`] or [`query_error`], framed with
//! [`mllp::encode`]. [`ReplayCache`] remembers answers in memory; the listener keeps them
//! durable with the application instead ([`crate::app::Once`]), keyed by [`ReplayKey`].
//!
//! What is read:
//! - ADT^A01, A04, A05, A08 (IHE ITI-8, v2.3.1 and v2.5): PID → [`crate::record::Record`],
//!   keyed by PID-3's assigning authority (the source) and id.
//! - ADT^A40 with MRG: the source merges two of its own records.
//! - QBP^Q23 (ITI-9, PIX query) and QBP^Q22 (ITI-21, PDQ query, with paging); QCN^J01
//!   ends a PDQ query's paging.
//!
//! Problems are [`Hl7Error`]s naming the position (`PID-7`, `QPD-3.4`) and an HL7 error
//! code, never a value; a message that cannot be read is rejected (AR), one that was read but
//! cannot be applied is refused (AE).

mod answer;
mod error;
mod header;
pub mod listener;
mod message;
pub mod mllp;
mod replay;
mod request;

pub use answer::{
    ack, query_error, rsp_k22, rsp_k23, Cx, Outbound, PdqCandidate, PdqPage, PixAnswer, Responder,
};
pub use error::{pid_position_of, AckCode, ErrorCode, Hl7Error, Location};
pub use header::{Hd, Header, Version, MAX_CONTROL_ID_LEN};
pub use message::{escape, Charset, Delimiters, Message, Segment, MAX_SEGMENTS};
pub use replay::{ReplayCache, ReplayKey, Seen};
pub use request::{
    parse_date, read_request, record_from_pid, AdtEvent, Cancel, Inbound, MappingOptions, Merge,
    PdqQuery, PixQuery, Rejection, Request,
};
