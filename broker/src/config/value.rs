//! A setting's value, read from TOML, a flag or a topic config string, checked against its row of the
//! table.
//!
//! Invariant: a [`Value`] handed to a [`Target`](super::table::Target) has its setting's type (an
//! integer for `Int`/`Long`, a boolean for `Boolean`, text otherwise: a `Double` is its checked,
//! finite decimal text) and passed its validator, so the
//! table's targets read it with [`Value::as_int`] / [`Value::as_bool`] / [`Value::as_text`] without
//! checks. Errors are the messages topic configs answered with before the table existed ("must be
//! positive", "expected CreateTime or LogAppendTime", …).

pub use super::table::Value;
use super::table::{ConfigType, Setting, Validator};

/// Reads `text` (a topic config, a table default) as a value of `setting`.
pub fn parse_text(setting: &Setting, text: &str) -> Result<Value, String> {
    let value = match setting.config_type {
        ConfigType::Boolean => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err("expected true or false".into()),
        },
        ConfigType::Int | ConfigType::Long => {
            Value::Int(text.parse::<i64>().map_err(|error| error.to_string())?)
        }
        ConfigType::Double => {
            let number = text
                .trim()
                .parse::<f64>()
                .map_err(|error| error.to_string())?;
            if !number.is_finite() {
                return Err("expected a finite number".into());
            }
            Value::Text(text.trim().to_string())
        }
        ConfigType::String | ConfigType::List => Value::Text(text.to_string()),
    };
    validate(setting, value)
}

/// Reads a TOML value as a value of `setting`.
pub fn parse_toml(setting: &Setting, item: &toml::Value) -> Result<Value, String> {
    let value = match (setting.config_type, item) {
        (ConfigType::Boolean, toml::Value::Boolean(flag)) => Value::Bool(*flag),
        (ConfigType::Boolean, _) => return Err("expected true or false".into()),
        (ConfigType::Int | ConfigType::Long, toml::Value::Integer(number)) => Value::Int(*number),
        (ConfigType::Int | ConfigType::Long, _) => return Err("expected an integer".into()),
        (ConfigType::String | ConfigType::List, toml::Value::String(text)) => {
            Value::Text(text.clone())
        }
        (ConfigType::String | ConfigType::List, _) => return Err("expected a string".into()),
        (ConfigType::Double, toml::Value::Float(number)) if number.is_finite() => {
            Value::Text(number.to_string())
        }
        (ConfigType::Double, toml::Value::Integer(number)) => Value::Text(number.to_string()),
        (ConfigType::Double, _) => return Err("expected a finite number".into()),
    };
    validate(setting, value)
}

/// Applies the setting's validator, then its type's width.
pub fn validate(setting: &Setting, value: Value) -> Result<Value, String> {
    match (&value, setting.validator) {
        (_, Validator::Any) => {}
        (Value::Int(number), Validator::AtLeast(least)) if *number < least => {
            return Err(match least {
                0 => "must not be negative".into(),
                1 => "must be positive".into(),
                _ => format!("must be at least {least}"),
            })
        }
        (Value::Int(number), Validator::Range(low, high)) if !(low..=high).contains(number) => {
            return Err(format!("{number} is not in {low}..={high}"))
        }
        (Value::Text(_), Validator::AtLeast(least))
            if setting.config_type == ConfigType::Double && value.as_double() < least as f64 =>
        {
            return Err(format!("must be at least {least}"))
        }
        (Value::Text(_), Validator::Ratio) if !(0.0..=1.0).contains(&value.as_double()) => {
            return Err("must be between 0 and 1".into())
        }
        (Value::Int(number), Validator::GzipLevel)
            if !((1..=9).contains(number) || *number == -1) =>
        {
            return Err(format!(
                "{number} is neither in 1..=9 nor -1 (the codec's default)"
            ))
        }
        (Value::Int(number), Validator::PositiveOrUnbounded) if *number < 1 && *number != -1 => {
            return Err(format!("{number} is neither positive nor -1 (unbounded)"))
        }
        (Value::Text(text), Validator::OneOf(words)) if !words.contains(&text.as_str()) => {
            return Err(format!("expected {}", either(words, "or")))
        }
        (Value::Text(text), Validator::ListOf(words))
            if !text.split(',').all(|word| words.contains(&word.trim())) =>
        {
            return Err(format!("expected {}", either(words, "and/or")))
        }
        _ => {}
    }
    if let (ConfigType::Int, Value::Int(number)) = (setting.config_type, &value) {
        if i32::try_from(*number).is_err() {
            return Err(format!("{number} does not fit a 32-bit integer"));
        }
    }
    Ok(value)
}

/// "a, b or c".
fn either(words: &[&str], last_joint: &str) -> String {
    match words.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} {last_joint} {last}", rest.join(", ")),
        None => String::new(),
    }
}
