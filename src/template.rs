//! `{{field}}` templates over a row's fields.
//!
//! Parsed once when the job loads, so a malformed template is a job error and
//! rendering a row is a walk over pre-split parts. A leaf shared by two
//! stages: the job parses templates, the plan renders them.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

/// A parsed template: literal text and `{{field}}` slots (spaces inside the braces allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed '{{{{' at byte {0}: write {{{{field}}}} to insert a field")]
    Unclosed(usize),
    #[error("empty field name '{{{{}}}}' at byte {0}")]
    EmptyField(usize),
}

/// Why a row could not be rendered: the field that is missing or null.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the template needs field {0:?}, which this row does not have")]
    Missing(String),
    #[error("the template needs field {0:?}, which is null in this row")]
    Null(String),
}

impl RenderError {
    pub fn field(&self) -> &str {
        match self {
            RenderError::Missing(f) | RenderError::Null(f) => f,
        }
    }
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + open))?;
            let name = after[..close].trim();
            if name.is_empty() {
                return Err(TemplateError::EmptyField(offset + open));
            }
            parts.push(Part::Field(name.to_string()));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The fields the template reads, in order of first use.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Substitutes the row's fields: strings as they are, other values as compact JSON.
    pub fn render(&self, fields: &Map<String, Value>) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len() + 64);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(name) => match fields.get(name) {
                    None => return Err(RenderError::Missing(name.clone())),
                    Some(Value::Null) => return Err(RenderError::Null(name.clone())),
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn substitutes_fields_with_and_without_spaces() {
        let t = Template::parse("Q: {{question}} ({{ lang }})").expect("parses");
        let out = t
            .render(&row(json!({"question": "Why?", "lang": "en"})))
            .expect("renders");
        assert_eq!(out, "Q: Why? (en)");
        assert_eq!(t.fields().collect::<Vec<_>>(), vec!["question", "lang"]);
    }

    #[test]
    fn non_strings_render_as_compact_json() {
        let t = Template::parse("{{n}}|{{b}}|{{o}}|{{a}}").expect("parses");
        let out = t
            .render(&row(
                json!({"n": 17, "b": true, "o": {"k": 1}, "a": [1, "x"]}),
            ))
            .expect("renders");
        assert_eq!(out, r#"17|true|{"k":1}|[1,"x"]"#);
    }

    #[test]
    fn missing_and_null_fields_name_the_field() {
        let t = Template::parse("{{a}} {{b}}").expect("parses");
        let err = t.render(&row(json!({"a": "x"}))).unwrap_err();
        assert_eq!(err, RenderError::Missing("b".into()));
        assert!(err.to_string().contains("\"b\""));
        let err = t.render(&row(json!({"a": "x", "b": null}))).unwrap_err();
        assert_eq!(err, RenderError::Null("b".into()));
    }

    #[test]
    fn malformed_templates_are_rejected() {
        assert_eq!(
            Template::parse("a {{b").unwrap_err(),
            TemplateError::Unclosed(2)
        );
        assert_eq!(
            Template::parse("x{{ }}").unwrap_err(),
            TemplateError::EmptyField(1)
        );
    }

    #[test]
    fn text_without_fields_and_unicode_pass_through() {
        let t = Template::parse("héllo } { world").expect("parses");
        assert_eq!(t.render(&Map::new()).expect("renders"), "héllo } { world");
        let t = Template::parse("{{名前}}さん").expect("parses");
        assert_eq!(
            t.render(&row(json!({"名前": "太郎"}))).expect("renders"),
            "太郎さん"
        );
    }
}
