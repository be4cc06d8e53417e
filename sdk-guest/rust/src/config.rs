//! Plugin configuration.

use serde::de::DeserializeOwned;

use crate::Error;

/// Parses the JSON configuration `init` receives into `T`.
///
/// An empty or blank string, or `null`, gives `T::default()` (the host passes `{}` when
/// no configuration is set; a `#[serde(default)]` struct then gets its defaults too).
/// Invalid JSON or a wrong shape gives an error that starts with `invalid config: `.
pub fn parse_config<T: DeserializeOwned + Default>(config: &str) -> Result<T, Error> {
    let trimmed = config.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Ok(T::default());
    }
    serde_json::from_str(trimmed).map_err(|err| Error::msg(format!("invalid config: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        label: String,
    }

    #[test]
    fn empty_config_is_default() {
        assert_eq!(parse_config::<Config>("").ok(), Some(Config::default()));
        assert_eq!(
            parse_config::<Config>(" null ").ok(),
            Some(Config::default())
        );
        assert_eq!(parse_config::<Config>("{}").ok(), Some(Config::default()));
    }

    #[test]
    fn invalid_config_names_the_problem() {
        let err = parse_config::<Config>("{\"label\": 3}").err();
        assert!(err.is_some_and(|e| e.message().starts_with("invalid config: invalid type")));
        let err = parse_config::<Config>("{nope").err();
        assert!(err.is_some_and(|e| e.message().starts_with("invalid config: key must be")));
    }
}
