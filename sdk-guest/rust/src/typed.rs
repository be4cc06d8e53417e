//! Typed reads with k8s-openapi types (feature `typed`).

use k8s_openapi::Resource;
use serde::de::DeserializeOwned;

use crate::{Context, Error, ObjectRef};

impl ObjectRef {
    /// A reference to an object of the k8s-openapi type `K`
    /// (`ObjectRef::to::<Pod>(Some("default"), "web-0")`).
    pub fn to<K: Resource>(namespace: Option<&str>, name: &str) -> Self {
        Self {
            api_version: K::API_VERSION.to_owned(),
            kind: K::KIND.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl Context {
    /// The object of type `K` named `name` (in `namespace`, `None` for cluster-scoped
    /// kinds), deserialized; `Ok(None)` when it is not in the cache.
    ///
    /// ```ignore
    /// let pod = ctx.get_typed::<k8s_openapi::api::core::v1::Pod>(Some("default"), "web-0")?;
    /// ```
    pub fn get_typed<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<K>, Error> {
        self.get_as(&ObjectRef::to::<K>(namespace, name))
    }

    /// Objects of type `K`, deserialized; see [`Context::list`].
    pub fn list_typed<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<K>, Error> {
        crate::backend::list(K::API_VERSION, K::KIND, namespace, selector)
            .map_err(|err| Error::msg(format!("listing {}/{}: {err}", K::API_VERSION, K::KIND)))?
            .iter()
            .map(|text| serde_json::from_str(text).map_err(Error::from))
            .collect()
    }
}
