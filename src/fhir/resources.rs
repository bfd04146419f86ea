//! The few FHIR R4 resources the door reads and writes, as plain serde structs: only the
//! elements empi uses. Written as FHIR JSON wants it: `resourceType` first, empty arrays and
//! absent values left out, choice elements (`multipleBirth[x]`, `value[x]`) spelled with
//! their type.

use serde::Serialize;

/// A resource, tagged with its `resourceType`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    /// Patient.
    Patient(Patient),
    /// Bundle.
    Bundle(Bundle),
    /// Parameters.
    Parameters(Parameters),
    /// OperationOutcome.
    OperationOutcome(OperationOutcome),
    /// CapabilityStatement.
    CapabilityStatement(CapabilityStatement),
}

impl Resource {
    /// Compact JSON, as sent.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no NaN (scores
        // are made finite where they are set).
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Indented JSON, for people and fixtures.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Patient: the elements matching uses, plus `link` for merged persons.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    /// The logical id (an EUID on output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Identifiers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    /// Whether the record is in use (false for a merged-away person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
    /// Phones and e-mail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub telecom: Vec<ContactPoint>,
    /// `male`, `female`, `other` or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<Address>,
    /// `multipleBirthBoolean`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiple_birth_boolean: Option<bool>,
    /// `multipleBirthInteger`: the birth order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiple_birth_integer: Option<i64>,
    /// Links to other Patient resources of the same person.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<PatientLink>,
}

/// Identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identifier {
    /// `usual`, `official`, `temp`, `secondary`, `old`.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The namespace URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// HumanName.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HumanName {
    /// `usual`, `official`, `temp`, `nickname`, `anonymous`, `old`, `maiden`.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Family name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Given names, first first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
}

/// ContactPoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContactPoint {
    /// `phone`, `fax`, `email`, `pager`, `url`, `sms`, `other`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The number or address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `home`, `work`, `temp`, `old`, `mobile`.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// Address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// `home`, `work`, `temp`, `old`, `billing`.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Street lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub line: Vec<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Country.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Patient.link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatientLink {
    /// The other Patient.
    pub other: Reference,
    /// `replaced-by`, `replaces`, `refer`, `seealso`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// Reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// `Patient/E0000000001`.
    pub reference: String,
}

/// Bundle (a searchset here).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bundle {
    /// `searchset`.
    #[serde(rename = "type")]
    pub type_: String,
    /// How many matches.
    pub total: u64,
    /// The matches, best first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<BundleEntry>,
}

/// Bundle.entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    /// The resource's absolute URL.
    pub full_url: String,
    /// The resource.
    pub resource: Resource,
    /// Why it is in the set.
    pub search: BundleSearch,
}

/// Bundle.entry.search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleSearch {
    /// The match-grade extension.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    /// `match`.
    pub mode: String,
    /// 0 to 1.
    pub score: f64,
}

/// An extension with a code value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    /// The extension's definition.
    pub url: String,
    /// Its value.
    pub value_code: String,
}

/// Parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Parameters {
    /// The parameters, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameter: Vec<Parameter>,
}

/// Parameters.parameter: a name and one value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    /// The parameter's name.
    pub name: String,
    /// `valueBoolean`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_boolean: Option<bool>,
    /// `valueInteger`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i64>,
    /// `valueIdentifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_identifier: Option<Identifier>,
    /// `valueReference`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_reference: Option<Reference>,
    /// `resource`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Box<Resource>>,
}

/// OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperationOutcome {
    /// The issues.
    pub issue: Vec<Issue>,
}

/// OperationOutcome.issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// `fatal`, `error`, `warning`, `information`.
    pub severity: String,
    /// The issue type, e.g. `invalid`, `structure`, `not-found`.
    pub code: String,
    /// What is wrong, without values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    /// FHIRPath of the element concerned, e.g. `Patient.birthDate`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

/// CapabilityStatement: what the server supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityStatement {
    /// `active`.
    pub status: String,
    /// When the statement was made (the build), `YYYY-MM-DD`.
    pub date: String,
    /// `instance`.
    pub kind: String,
    /// The software.
    pub software: Software,
    /// This installation.
    pub implementation: Implementation,
    /// `4.0.1`.
    pub fhir_version: String,
    /// `json`.
    pub format: Vec<String>,
    /// The REST interface.
    pub rest: Vec<Rest>,
}

/// CapabilityStatement.software.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Software {
    /// `empi`.
    pub name: String,
    /// The version.
    pub version: String,
}

/// CapabilityStatement.implementation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Implementation {
    /// In words.
    pub description: String,
    /// The base URL.
    pub url: String,
}

/// CapabilityStatement.rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rest {
    /// `server`.
    pub mode: String,
    /// How clients authenticate.
    pub security: Security,
    /// The resources served.
    pub resource: Vec<RestResource>,
}

/// CapabilityStatement.rest.security.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    /// Whether CORS headers are sent.
    #[serde(skip_serializing_if = "is_false")]
    pub cors: bool,
    /// In words.
    pub description: String,
}

/// CapabilityStatement.rest.resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestResource {
    /// The resource type.
    #[serde(rename = "type")]
    pub type_: String,
    /// The interactions, e.g. `read`.
    pub interaction: Vec<Interaction>,
    /// The operations on the type.
    pub operation: Vec<Operation>,
}

/// CapabilityStatement.rest.resource.interaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interaction {
    /// `read`, `search-type`, …
    pub code: String,
}

/// CapabilityStatement.rest.resource.operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// The name used in the URL, without `$`.
    pub name: String,
    /// The OperationDefinition's canonical URL.
    pub definition: String,
}
