//! `provenix publisher add|list|remove`: the CI workflows (trusted
//! publishers) whose OIDC tokens may push to a cache.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use provenix_policy::publisher::{
    GenericPublisher, GithubPublisher, GitlabPublisher, NixKeyPublisher, DEFAULT_GITHUB_ISSUER,
    DEFAULT_GITLAB_ISSUER,
};
use provenix_policy::Publisher;

use super::client_for;
use crate::time::format_time;

/// Manage the CI workflows trusted to push to a cache (trusted publishers).
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum PublisherCommand {
    /// Trust a GitHub Actions workflow (`--github`), a GitLab CI pipeline
    /// (`--gitlab`) or any OIDC issuer's tokens (`--issuer NAME --claim
    /// NAME=GLOB ...`) to push to a cache; or register a Nix key for
    /// `nix copy --to` uploads (`--nix-key NAME:BASE64 --subject SUB`).
    Add {
        cache: String,
        /// OWNER/REPO of the repository whose workflow pushes.
        #[arg(long, requires_all = ["repository_id", "owner_id", "workflow"], conflicts_with = "gitlab")]
        github: Option<String>,
        /// GROUP/PROJECT of the GitLab project whose pipeline pushes
        /// (gitlab.com or self-managed: `--issuer` names which, default
        /// `gitlab`).
        #[arg(long, requires_all = ["project_id", "namespace_id", "ci_config"])]
        gitlab: Option<String>,
        /// The GitLab project's numeric id (Settings > General).
        #[arg(long)]
        project_id: Option<u64>,
        /// The numeric id of the project's group or user namespace
        /// (`GET /api/v4/projects/ID`'s `namespace.id`).
        #[arg(long)]
        namespace_id: Option<u64>,
        /// The project's CI config file that runs, e.g. .gitlab-ci.yml.
        #[arg(long)]
        ci_config: Option<String>,
        /// GitLab: accept only pipelines of protected branches and tags.
        #[arg(long)]
        protected_ref: bool,
        /// The repository's numeric id (`gh api repos/OWNER/REPO --jq .id`).
        #[arg(long)]
        repository_id: Option<u64>,
        /// The owner's numeric id (`gh api repos/OWNER/REPO --jq .owner.id`).
        #[arg(long)]
        owner_id: Option<u64>,
        /// The workflow file under .github/workflows/, e.g. build.yml.
        #[arg(long)]
        workflow: Option<String>,
        /// Require this deployment environment.
        #[arg(long)]
        environment: Option<String>,
        /// Require the git ref to match this glob, e.g. 'refs/heads/main' or 'refs/tags/v*'.
        #[arg(long = "ref")]
        ref_glob: Option<String>,
        /// The reusable workflow the job runs in: OWNER/REPO/PATH@REF (REF may be a glob).
        #[arg(long)]
        reusable_workflow: Option<String>,
        /// Accept an event refused by default (pull_request_target). Repeatable.
        #[arg(long = "allow-event")]
        allow_events: Vec<String>,
        /// Accept self-hosted runners (default: GitHub-hosted only).
        #[arg(long)]
        allow_self_hosted: bool,
        /// Also let the job pull from the cache with its session token. By
        /// default a publisher may only push: reading a private cache is a
        /// grant of its own.
        #[arg(long)]
        grant_pull: bool,
        /// The server's name for the issuer ([[oidc.issuers]] name).
        #[arg(long)]
        issuer: Option<String>,
        /// For a generic issuer: a claim that must match a glob, NAME=GLOB. Repeatable.
        #[arg(long = "claim", conflicts_with_all = ["github", "gitlab"])]
        claims: Vec<String>,
        /// Register a Nix public key (NAME:BASE64) for `nix copy --to
        /// http://HOST/CACHE?secret-key=FILE` uploads by the token whose
        /// `sub` is --subject: narinfos it signs are accepted from that
        /// token, and recorded with both.
        #[arg(long, requires = "subject", conflicts_with_all = ["github", "gitlab", "issuer", "claims"])]
        nix_key: Option<String>,
        /// With --nix-key: the `sub` of the token that uploads (`provenix
        /// whoami` shows it).
        #[arg(long, requires = "nix_key")]
        subject: Option<String>,
    },
    /// List a cache's trusted publishers.
    List {
        cache: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a publisher (by the id `list` shows).
    Remove { cache: String, id: i64 },
}

pub async fn run(command: PublisherCommand) -> Result<()> {
    match command {
        PublisherCommand::Add {
            cache,
            github,
            gitlab,
            project_id,
            namespace_id,
            ci_config,
            protected_ref,
            repository_id,
            owner_id,
            workflow,
            environment,
            ref_glob,
            reusable_workflow,
            allow_events,
            allow_self_hosted,
            grant_pull,
            issuer,
            claims,
            nix_key,
            subject,
        } => {
            let (api, _, cache) = client_for(&cache)?;
            if gitlab.is_none() && protected_ref {
                bail!("--protected-ref goes with --gitlab");
            }
            let publisher = match (github, gitlab) {
                _ if nix_key.is_some() => Publisher::NixKey(NixKeyPublisher {
                    nix_key: nix_key.unwrap_or_default().trim().to_string(),
                    subject: subject.unwrap_or_default(),
                }),
                (_, Some(project)) => {
                    if reusable_workflow.is_some() || !allow_events.is_empty() || allow_self_hosted
                    {
                        bail!("--reusable-workflow, --allow-event and --allow-self-hosted go with --github");
                    }
                    Publisher::Gitlab(GitlabPublisher {
                        issuer: issuer.unwrap_or_else(|| DEFAULT_GITLAB_ISSUER.into()),
                        project,
                        project_id: project_id.context("--project-id is required")?,
                        namespace_id: namespace_id.context("--namespace-id is required")?,
                        ci_config: ci_config.context("--ci-config is required")?,
                        ref_glob,
                        environment,
                        protected_ref,
                        grants_pull: grant_pull,
                    })
                }
                (Some(repository), None) => Publisher::Github(GithubPublisher {
                    issuer: issuer.unwrap_or_else(|| DEFAULT_GITHUB_ISSUER.into()),
                    repository,
                    repository_id: repository_id.context("--repository-id is required")?,
                    owner_id: owner_id.context("--owner-id is required")?,
                    workflow: workflow.context("--workflow is required")?,
                    environment,
                    ref_glob,
                    reusable_workflow,
                    allow_events,
                    allow_self_hosted,
                    grants_pull: grant_pull,
                }),
                (None, None) => {
                    let issuer = issuer.context(
                        "give --github OWNER/REPO ..., --gitlab GROUP/PROJECT ..., or --issuer NAME --claim NAME=GLOB ...",
                    )?;
                    if environment.is_some()
                        || ref_glob.is_some()
                        || reusable_workflow.is_some()
                        || !allow_events.is_empty()
                        || allow_self_hosted
                    {
                        bail!("--environment, --ref, --reusable-workflow, --allow-event and --allow-self-hosted go with --github; for other issuers use --claim NAME=GLOB");
                    }
                    let claims = claims
                        .iter()
                        .map(|c| {
                            c.split_once('=')
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .with_context(|| format!("--claim {c:?} is not NAME=GLOB"))
                        })
                        .collect::<Result<_>>()?;
                    Publisher::Generic(GenericPublisher {
                        issuer,
                        claims,
                        grants_pull: grant_pull,
                    })
                }
            };
            // The server checks too; checking here saves a round trip.
            publisher.validate()?;
            let added = api.add_publisher(&cache, &publisher).await?;
            println!(
                "✅ Trusted publisher {} added to \"{cache}\": {}",
                added.id,
                added.publisher.describe()
            );
        }
        PublisherCommand::List { cache, json } => {
            let (api, _, cache) = client_for(&cache)?;
            let list = api.publishers(&cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("Cache \"{cache}\" has no trusted publishers.");
            } else {
                println!("{:>4}  {:<20}  {:<20}  PUBLISHER", "ID", "ADDED", "BY");
                for p in list {
                    println!(
                        "{:>4}  {:<20}  {:<20}  {}",
                        p.id,
                        format_time(p.created_at),
                        p.created_by,
                        p.publisher.describe()
                    );
                }
            }
        }
        PublisherCommand::Remove { cache, id } => {
            let (api, _, cache) = client_for(&cache)?;
            api.remove_publisher(&cache, id).await?;
            println!("🗑️ Removed trusted publisher {id} from \"{cache}\"");
        }
    }
    Ok(())
}
