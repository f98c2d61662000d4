//! The identity flags `audit`, `keys list` and `revoke` share: who a key
//! was issued to, as one `IdentitySelector` the server's query takes.

use clap::Args;
use provenix_provenance::audit::IdentitySelector;

#[derive(Args)]
pub struct IdentityFlags {
    /// OWNER/REPO or the numeric repository id.
    #[arg(long)]
    repository: Option<String>,
    /// Workflow file name (build.yml) or a full workflow_ref.
    #[arg(long)]
    workflow: Option<String>,
    #[arg(long)]
    run_id: Option<String>,
    /// A key id.
    #[arg(long)]
    key: Option<String>,
    /// The identity's subject (a person's token `sub`, or the OIDC `sub`).
    #[arg(long)]
    subject: Option<String>,
    /// The issuer URL of the identity's token (as records show it): needed
    /// when a repository, workflow, run or subject matches in more than one.
    #[arg(long)]
    issuer: Option<String>,
}

impl IdentityFlags {
    pub fn selector(&self) -> IdentitySelector {
        IdentitySelector {
            repository: self.repository.clone(),
            workflow: self.workflow.clone(),
            run_id: self.run_id.clone(),
            key: self.key.clone(),
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
        }
    }
}
