//! The FHIR R4 (JSON) front door: its HTTP listener ([`http`]), and the codecs it uses: the
//! resources `Patient/$match`, `Patient/$ihe-pix` (IHE PIXm), `GET Patient/[euid]`, errors
//! and `metadata` need, and their conversion to and from the domain. The codecs are
//! conversion only: no HTTP, no policy.
//!
//! The resources are written by hand with serde ([`resources`]), a few hundred lines for
//! the five resources and their elements that empi uses. The maintained FHIR crates did not
//! fit: `fhirbolt` generates every R4 resource (about 11 MB of Rust source to compile on
//! each clean build, for five resources used), and `fhir-sdk` needs a newer Rust than this
//! crate's `rust-version` and models R4B and R5 but not R4. Reading is done element by
//! element ([`read`]) rather than by serde derive, so that a refusal names the element as a
//! FHIRPath (`Parameters.parameter[0].resource.birthDate`) and never quotes the value,
//! which serde's messages do.
//!
//! The door's calls:
//! - `POST Patient/$match`: [`read_match_request`] → the application's candidates →
//!   [`match_bundle`] (a searchset Bundle with `search.score` and the match-grade
//!   extension).
//! - `GET Patient/$ihe-pix`: [`read_pixm_query`] → the person → [`pixm_parameters`].
//! - `GET Patient/[euid]`: the person → [`person_to_patient`].
//! - Errors: [`outcome_of`] (status and OperationOutcome); `GET metadata`:
//!   [`capability_statement`].

mod convert;
pub mod http;
pub mod read;
pub mod resources;

pub use convert::{
    capability_statement, match_bundle, outcome, outcome_of, patient_element_of, patient_to_record,
    person_to_patient, pixm_parameters, pixm_unknown_target_system, read_match_request,
    read_pixm_query, FhirConfig, FhirPerson, MatchCandidate, MatchGrade, MatchRequest, Outcome,
    PixmQuery, SourceSystem, MATCH_GRADE_URL, SOURCE_SYSTEM_PREFIX,
};
pub use resources::Resource;
