// Entry point for `azd up`: one resource group with everything the recommender needs.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name and tag every resource.')
param environmentName string

@minLength(1)
@description('Azure region for all resources.')
param location string

@description('Cosmos DB capacity: serverless (pay per request) or autoscale (provisioned RU/s).')
@allowed([
  'serverless'
  'autoscale'
])
param cosmosCapacityMode string = 'serverless'

@description('Maximum autoscale RU/s of the database when cosmosCapacityMode is autoscale.')
param cosmosAutoscaleMaxThroughput int = 4000

@description('NCRONTAB schedule of the retrain timer (UTC).')
param retrainSchedule string = '0 0 3 * * *'

@description('Tenants the timer retrains (comma separated).')
param tenants string = 'default'

@description('Deploy an Azure Databricks workspace for the large-data retrain path.')
param deployDatabricks bool = false

@description('Per-tenant business rules (JSON, see README "HTTP API"); empty for none.')
param rules string = ''

@description('Experiments and their variants (JSON, see README "HTTP API"); empty for none.')
param experiments string = ''

@description('MLflow tracking URI (an Azure ML or Databricks workspace) that keeps training runs.')
param mlflowTrackingUri string = 'file:///tmp/reco/mlruns'

@description('Databricks job id of the large-data retrain (after deploying its bundle); empty for none.')
param databricksJobId string = ''

@description('Databricks workspace URL for the hand-off (https://adb-....azuredatabricks.net).')
param databricksHost string = ''

@description('Object id of the service principal the Databricks job signs in with (its secret in the job\'s secret scope); granted the same data access as the Function App. Empty: none.')
param databricksPrincipalId string = ''

@description('Object id of the deploying user, granted data access for the first training run.')
param principalId string = ''

var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'resources'
  scope: rg
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    cosmosCapacityMode: cosmosCapacityMode
    cosmosAutoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
    retrainSchedule: retrainSchedule
    tenants: tenants
    principalId: principalId
    rules: rules
    experiments: experiments
    mlflowTrackingUri: mlflowTrackingUri
    databricksJobId: databricksJobId
    databricksHost: databricksHost
    databricksPrincipalId: databricksPrincipalId
  }
}

module databricks 'databricks.bicep' = if (deployDatabricks) {
  name: 'databricks'
  scope: rg
  params: {
    environmentName: environmentName
    location: location
    tags: tags
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output SERVICE_API_URI string = resources.outputs.functionAppUri
output COSMOS_ENDPOINT string = resources.outputs.cosmosEndpoint
output REDIS_HOST string = resources.outputs.redisHost
output ARTIFACTS_ACCOUNT_URL string = resources.outputs.artifactsAccountUrl
output CAPTURE_EVENTS_PATH string = resources.outputs.captureEventsPath
output DATABRICKS_WORKSPACE_URL string = deployDatabricks ? 'https://${databricks.outputs.workspaceUrl}' : ''
