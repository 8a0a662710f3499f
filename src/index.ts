export { build, prepare, findPlannedFile, VERSION, type BuildOptions, type BuildResult, type CommonOptions } from './build.js';
export { loadProfile, findProfile, type LoadedProfile } from './profile/load.js';
export { profileSchema, profileJsonSchema, type Profile } from './profile/schema.js';
export { loadSecrets, SECRET_ENV, type Secrets } from './profile/secrets.js';
export { loadOverlays } from './overlays/load.js';
export { planCluster, manifest, type BuildPlan, type PlannedFile } from './plan/plan.js';
export { emitCluster } from './emit/cluster.js';
export {
  InternalError,
  NetrootError,
  NothingToUndoError,
  ProfileError,
  StaleBuildError,
  StoppedError,
  TargetRecordError,
  TemplateError,
  UsageError,
} from './errors.js';
export {
  deploy,
  planDeploy,
  rollback,
  STATE_PATHS,
  statePaths,
  type DeployOptions,
  type DeployPlan,
  type DeployResult,
  type Operation,
  type RollbackResult,
  type TargetOptions,
} from './deploy/index.js';
export { clusterSecretsFile, secretsDir } from './profile/store.js';
