//! Which storage account, where its blob service is, and how requests are authorized, from
//! the variables Azure's own tools read:
//!
//! 1. `AZURE_STORAGE_CONNECTION_STRING` (`AccountName=…;AccountKey=…` or
//!    `…;SharedAccessSignature=…`, with `BlobEndpoint=` or `DefaultEndpointsProtocol=` and
//!    `EndpointSuffix=`; `UseDevelopmentStorage=true` for the emulator's well-known account);
//! 2. else `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN`;
//! 3. else `AZURE_STORAGE_ACCOUNT` alone: a managed identity's token, when running on Azure.
//!
//! Keys and SAS tokens are secrets: no message, log line or `Debug` output shows them.

use base64::Engine;

use crate::error::InputError;

/// How requests are authorized.
pub enum Auth {
    /// Shared Key: each request signed with the account key (decoded).
    SharedKey(Vec<u8>),
    /// A shared access signature: query parameters appended to every request.
    Sas(String),
    /// A managed identity's OAuth token, fetched when needed.
    ManagedIdentity,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::SharedKey(_) => "SharedKey(…)",
            Auth::Sas(_) => "Sas(…)",
            Auth::ManagedIdentity => "ManagedIdentity",
        })
    }
}

#[derive(Debug)]
pub struct Account {
    pub name: String,
    /// The blob service's URL, without a trailing slash: `https://<name>.blob.core.windows.net`,
    /// or an emulator's `http://127.0.0.1:10000/<name>` (the account in the path).
    pub endpoint: String,
    pub auth: Auth,
}

const CONNECTION_STRING: &str = "AZURE_STORAGE_CONNECTION_STRING";
const ACCOUNT: &str = "AZURE_STORAGE_ACCOUNT";
const KEY: &str = "AZURE_STORAGE_KEY";
const SAS: &str = "AZURE_STORAGE_SAS_TOKEN";

/// The storage emulator's documented development account (a public, well-known key).
const DEVELOPMENT_ACCOUNT: &str = "devstoreaccount1";
const DEVELOPMENT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Account {
    /// The account the environment describes.
    pub fn from_env() -> Result<Account, InputError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(connection) = var(CONNECTION_STRING) {
            return Account::from_connection_string(&connection);
        }
        let Some(name) = var(ACCOUNT) else {
            return Err(InputError::new("no Azure storage account is configured").hint(format!(
                "set {CONNECTION_STRING}, or {ACCOUNT} with {KEY} or {SAS} (or {ACCOUNT} alone, on Azure with a \
                 managed identity)"
            )));
        };
        let endpoint = format!("https://{name}.blob.core.windows.net");
        let auth = match (var(KEY), var(SAS)) {
            (Some(key), _) => Auth::SharedKey(decode_key(&key, KEY)?),
            (None, Some(sas)) => Auth::Sas(sas.trim_start_matches('?').to_string()),
            (None, None) => Auth::ManagedIdentity,
        };
        Ok(Account { name, endpoint, auth })
    }

    /// An account from a connection string, as the Azure portal and SDKs write them.
    pub fn from_connection_string(connection: &str) -> Result<Account, InputError> {
        let pairs: Vec<(&str, &str)> =
            connection.split(';').filter(|p| !p.trim().is_empty()).filter_map(|p| p.split_once('=')).collect();
        let field = |name: &str| pairs.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim());
        if field("UseDevelopmentStorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let key = decode_key(DEVELOPMENT_KEY, "the development key")?;
            let endpoint = format!("http://127.0.0.1:10000/{DEVELOPMENT_ACCOUNT}");
            return Ok(Account { name: DEVELOPMENT_ACCOUNT.into(), endpoint, auth: Auth::SharedKey(key) });
        }
        let name = field("AccountName").ok_or_else(|| {
            InputError::new(format!("{CONNECTION_STRING} has no AccountName"))
                .hint("copy the connection string from the storage account's Access keys page")
        })?;
        let endpoint = match field("BlobEndpoint") {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => {
                let protocol = field("DefaultEndpointsProtocol").unwrap_or("https");
                let suffix = field("EndpointSuffix").unwrap_or("core.windows.net");
                format!("{protocol}://{name}.blob.{suffix}")
            }
        };
        let auth = match (field("AccountKey"), field("SharedAccessSignature")) {
            (Some(key), _) => Auth::SharedKey(decode_key(key, &format!("the AccountKey of {CONNECTION_STRING}"))?),
            (None, Some(sas)) => Auth::Sas(sas.trim_start_matches('?').to_string()),
            (None, None) => {
                return Err(InputError::new(format!(
                    "{CONNECTION_STRING} has neither AccountKey nor SharedAccessSignature"
                ))
                .hint("copy the connection string from the storage account's Access keys page, or make a SAS one"))
            }
        };
        Ok(Account { name: name.to_string(), endpoint, auth })
    }
}

/// An account key is base64; the message never shows it.
fn decode_key(key: &str, what: &str) -> Result<Vec<u8>, InputError> {
    base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| {
        InputError::new(format!("{what} is not a storage account key (it is not base64)"))
            .hint("copy key1 or key2 from the storage account's Access keys page")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_give_the_account_its_endpoint_and_credential() {
        let azurite =
            "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:5/acct/;";
        let account = Account::from_connection_string(azurite).unwrap();
        assert_eq!((account.name.as_str(), account.endpoint.as_str()), ("acct", "http://127.0.0.1:5/acct"));
        assert!(matches!(&account.auth, Auth::SharedKey(key) if key == b"key"));

        let sas = "AccountName=prod;SharedAccessSignature=?sv=2024-11-04&sig=abc;EndpointSuffix=core.chinacloudapi.cn";
        let account = Account::from_connection_string(sas).unwrap();
        assert_eq!(account.endpoint, "https://prod.blob.core.chinacloudapi.cn");
        assert!(matches!(&account.auth, Auth::Sas(s) if s == "sv=2024-11-04&sig=abc"));
        assert_eq!(format!("{:?}", account.auth), "Sas(…)");

        let development = Account::from_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(development.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
    }

    #[test]
    fn a_bad_key_is_refused_without_showing_it() {
        let error = Account::from_connection_string("AccountName=a;AccountKey=not base64!secret").unwrap_err();
        assert!(error.to_string().contains("not a storage account key") && !error.to_string().contains("secret"));
        let error = Account::from_connection_string("AccountName=a").unwrap_err();
        assert!(error.to_string().contains("neither AccountKey nor SharedAccessSignature"), "{error}");
    }
}
