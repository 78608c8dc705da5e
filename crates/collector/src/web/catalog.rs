//! The console's source catalog: the config file's sources (read-only in the console) and
//! the sources the console stored, their tokens decrypted. The engine's supervisor runs
//! whatever it lists; a stored source that cannot be resolved is listed as broken.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::crypto::TokenCipher;
use crate::config::Source;
use crate::engine::{Broken, Catalog, CatalogEntry, SourceCatalog};
use crate::store::{Store, StoreError};

pub struct ConsoleCatalog {
    pub store: Store,
    pub cipher: Arc<TokenCipher>,
    pub config_sources: Vec<Source>,
}

impl ConsoleCatalog {
    pub fn is_config_source(&self, name: &str) -> bool {
        self.config_sources.iter().any(|s| s.name == name)
    }

    async fn list(&self) -> Result<Catalog, StoreError> {
        let mut catalog = Catalog {
            sources: self
                .config_sources
                .iter()
                .map(|s| CatalogEntry {
                    source: s.clone(),
                    version: "config".into(),
                    read_only: true,
                })
                .collect(),
            broken: Vec::new(),
        };
        for cs in super::sources::list(&self.store).await? {
            if self.is_config_source(&cs.name) {
                continue;
            }
            match cs.resolve(&self.cipher) {
                Ok(source) => catalog.sources.push(CatalogEntry {
                    source,
                    version: cs.updated_at.to_string(),
                    read_only: false,
                }),
                Err(e) => {
                    tracing::warn!(source = %cs.name, error = %e, "console source cannot start");
                    catalog.broken.push(Broken {
                        name: cs.name.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(catalog)
    }
}

impl SourceCatalog for ConsoleCatalog {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Catalog, StoreError>> + Send + '_>> {
        Box::pin(self.list())
    }
}
