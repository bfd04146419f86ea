//! Reading FHIR JSON into [`super::resources`], element by element, so that every refusal
//! names the element by its FHIRPath (`Parameters.parameter[0].resource.name[1].given[0]`)
//! and none echoes a value (serde's own messages quote what they could not read).
//!
//! Elements empi does not use are ignored, as FHIR allows a receiver to; `null` and blank
//! strings read as absent. The type of every element that is used is checked.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

use super::resources::{
    Address, ContactPoint, HumanName, Identifier, Parameter, Parameters, Patient, Resource,
};

/// Most entries read from any one array; more is refused (a patient has a few names).
pub const MAX_ARRAY: usize = 64;

fn invalid(path: &str, reason: impl Into<Cow<'static, str>>) -> Error {
    Error::invalid(path.to_string(), reason)
}

/// The JSON of a request body.
///
/// # Errors
/// [`Error::InvalidInput`] naming `body`, with where the JSON breaks but not what is there.
pub fn parse_json(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Eof => "not valid JSON: it ends too early".to_string(),
            _ => format!("not valid JSON (line {}, column {})", e.line(), e.column()),
        };
        invalid("body", reason)
    })
}

/// The object at `path`, with its `resourceType` checked.
fn resource<'a>(v: &'a Value, path: &str, want: &'static str) -> Result<&'a Map<String, Value>> {
    let o = v.as_object().ok_or_else(|| {
        invalid(
            if path.is_empty() { "body" } else { path },
            "not a JSON object",
        )
    })?;
    match o.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == want => Ok(o),
        Some(_) => Err(invalid(
            &join(path, "resourceType"),
            format!("expected {want}"),
        )),
        None => Err(invalid(&join(path, "resourceType"), "missing")),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| invalid(path, "expected an object"))
}

/// A string element; `null` and blank read as absent.
fn string(o: &Map<String, Value>, path: &str, name: &str) -> Result<Option<String>> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.trim().is_empty()).then(|| s.trim().to_string())),
        Some(_) => Err(invalid(&join(path, name), "expected a string")),
    }
}

fn boolean(o: &Map<String, Value>, path: &str, name: &str) -> Result<Option<bool>> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(&join(path, name), "expected true or false")),
    }
}

fn integer(o: &Map<String, Value>, path: &str, name: &str) -> Result<Option<i64>> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| i32::try_from(*n).is_ok())
            .map(Some)
            .ok_or_else(|| invalid(&join(path, name), "expected a 32-bit integer")),
        Some(_) => Err(invalid(&join(path, name), "expected an integer")),
    }
}

/// The entries of an array element with their paths (`name[0]`, …).
fn array<'a>(
    o: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Vec<(&'a Value, String)>> {
    let p = join(path, name);
    match o.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) if a.len() > MAX_ARRAY => {
            Err(invalid(&p, format!("more than {MAX_ARRAY} entries")))
        }
        Some(Value::Array(a)) => Ok(a
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_null())
            .map(|(i, v)| (v, format!("{p}[{i}]")))
            .collect()),
        Some(_) => Err(invalid(&p, "expected an array")),
    }
}

fn strings(o: &Map<String, Value>, path: &str, name: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (v, p) in array(o, path, name)? {
        match v {
            Value::String(s) if s.trim().is_empty() => {}
            Value::String(s) => out.push(s.trim().to_string()),
            _ => return Err(invalid(&p, "expected a string")),
        }
    }
    Ok(out)
}

/// A Patient resource at `path` (`Patient` for a body, or inside Parameters).
///
/// # Errors
/// [`Error::InvalidInput`] naming the element.
pub fn patient(v: &Value, path: &str) -> Result<Patient> {
    let o = resource(v, path, "Patient")?;
    let mut p = Patient {
        id: string(o, path, "id")?,
        active: boolean(o, path, "active")?,
        gender: string(o, path, "gender")?,
        birth_date: string(o, path, "birthDate")?,
        multiple_birth_boolean: boolean(o, path, "multipleBirthBoolean")?,
        multiple_birth_integer: integer(o, path, "multipleBirthInteger")?,
        ..Patient::default()
    };
    for (v, ip) in array(o, path, "identifier")? {
        let i = object(v, &ip)?;
        p.identifier.push(Identifier {
            use_: string(i, &ip, "use")?,
            system: string(i, &ip, "system")?,
            value: string(i, &ip, "value")?,
        });
    }
    for (v, np) in array(o, path, "name")? {
        let n = object(v, &np)?;
        p.name.push(HumanName {
            use_: string(n, &np, "use")?,
            family: string(n, &np, "family")?,
            given: strings(n, &np, "given")?,
        });
    }
    for (v, tp) in array(o, path, "telecom")? {
        let t = object(v, &tp)?;
        p.telecom.push(ContactPoint {
            system: string(t, &tp, "system")?,
            value: string(t, &tp, "value")?,
            use_: string(t, &tp, "use")?,
        });
    }
    for (v, ap) in array(o, path, "address")? {
        let a = object(v, &ap)?;
        p.address.push(Address {
            use_: string(a, &ap, "use")?,
            line: strings(a, &ap, "line")?,
            city: string(a, &ap, "city")?,
            state: string(a, &ap, "state")?,
            postal_code: string(a, &ap, "postalCode")?,
            country: string(a, &ap, "country")?,
        });
    }
    Ok(p)
}

/// A Parameters resource: each parameter's name and the values empi reads (boolean,
/// integer, a Patient resource). Other value types are refused on the parameter.
///
/// # Errors
/// [`Error::InvalidInput`] naming the element.
pub fn parameters(v: &Value) -> Result<Parameters> {
    let path = "Parameters";
    let o = resource(v, "", path)?;
    let mut out = Parameters::default();
    for (v, pp) in array(o, path, "parameter")? {
        let p = object(v, &pp)?;
        let name = string(p, &pp, "name")?.ok_or_else(|| invalid(&join(&pp, "name"), "missing"))?;
        let mut param = Parameter {
            name,
            value_boolean: boolean(p, &pp, "valueBoolean")?,
            value_integer: integer(p, &pp, "valueInteger")?,
            ..Parameter::default()
        };
        if let Some(r) = p.get("resource").filter(|r| !r.is_null()) {
            param.resource = Some(Box::new(Resource::Patient(patient(
                r,
                &join(&pp, "resource"),
            )?)));
        }
        if let Some(other) = p.keys().find(|k| {
            k.starts_with("value") && !matches!(k.as_str(), "valueBoolean" | "valueInteger")
        }) {
            return Err(invalid(&join(&pp, other), "this value type is not read"));
        }
        out.parameter.push(param);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        let v = parse_json(json.as_bytes()).and_then(|v| parameters(&v));
        v.unwrap_err().to_string()
    }

    #[test]
    fn refusals_name_the_element_not_the_value() {
        let cases = [
            ("{", "body: not valid JSON: it ends too early"),
            ("{\"a\": SECRET}", "body: not valid JSON (line 1, column 7)"),
            ("[1]", "body: not a JSON object"),
            ("{}", "resourceType: missing"),
            ("{\"resourceType\": \"Patient\"}", "resourceType: expected Parameters"),
            ("{\"resourceType\": \"Parameters\", \"parameter\": {}}", "Parameters.parameter: expected an array"),
            ("{\"resourceType\": \"Parameters\", \"parameter\": [{\"valueBoolean\": true}]}", "Parameters.parameter[0].name: missing"),
            (
                "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"count\", \"valueInteger\": \"SECRET\"}]}",
                "Parameters.parameter[0].valueInteger: expected an integer",
            ),
            (
                "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"count\", \"valueInteger\": 99999999999}]}",
                "Parameters.parameter[0].valueInteger: expected a 32-bit integer",
            ),
            (
                "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"x\", \"valueString\": \"SECRET\"}]}",
                "Parameters.parameter[0].valueString: this value type is not read",
            ),
            (
                "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"resource\", \"resource\": {\"resourceType\": \"Person\"}}]}",
                "Parameters.parameter[0].resource.resourceType: expected Patient",
            ),
            (
                "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"resource\", \"resource\": {\"resourceType\": \"Patient\", \"name\": [{\"given\": [\"A\", 7]}]}}]}",
                "Parameters.parameter[0].resource.name[0].given[1]: expected a string",
            ),
            (
                "{\"resourceType\": \"Parameters\", \"parameter\": [{\"name\": \"resource\", \"resource\": {\"resourceType\": \"Patient\", \"birthDate\": 1956}}]}",
                "Parameters.parameter[0].resource.birthDate: expected a string",
            ),
        ];
        for (json, want) in cases {
            let got = err(json);
            assert_eq!(got, want, "{json}");
            assert!(!got.contains("SECRET"));
        }
        let many = format!(
            "{{\"resourceType\": \"Parameters\", \"parameter\": [{}]}}",
            vec!["{\"name\": \"count\"}"; 65].join(",")
        );
        assert_eq!(err(&many), "Parameters.parameter: more than 64 entries");
    }

    #[test]
    fn unused_elements_nulls_and_blanks_are_absent() {
        let v = parse_json(
            br#"{"resourceType": "Patient", "text": {"div": "x"}, "gender": null, "birthDate": " ",
                 "name": [null, {"family": "Doe", "given": ["", "Jo"], "period": {}}],
                 "_birthDate": {"extension": []}}"#,
        )
        .unwrap();
        let p = patient(&v, "Patient").unwrap();
        assert_eq!(p.gender, None);
        assert_eq!(p.birth_date, None);
        assert_eq!(p.name.len(), 1);
        assert_eq!(p.name[0].given, vec!["Jo".to_string()]);
    }
}
