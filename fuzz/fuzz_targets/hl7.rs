//! An HL7 v2 message on any bytes: `empi::hl7::read_request` reads it into a request or
//! refuses it naming a position, and the refusal is answered with a message that parses
//! again; never a panic.
#![no_main]

use empi::hl7::{self, Hd, MappingOptions, Message, Responder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let responder = Responder {
        application: Hd::named("EMPI"),
        facility: Hd::named("F"),
        control_id: "R1".into(),
        time_ms: 0,
    };
    let answer = match hl7::read_request(data, &MappingOptions::default(), 20_000) {
        Ok(inbound) => hl7::ack(&inbound.header, &[], &responder),
        Err(rejection) => rejection.answer(&responder),
    };
    assert!(Message::parse(&answer.to_bytes()).is_ok());
});
