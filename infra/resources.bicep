// Every resource of one environment. The Function App reaches each service with its
// system-assigned identity: no keys in app settings.
param environmentName string
param location string
param tags object
param cosmosCapacityMode string
param cosmosAutoscaleMaxThroughput int
param retrainSchedule string
param tenants string
param principalId string
param rules string
param experiments string
param mlflowTrackingUri string
param databricksJobId string
param databricksHost string
param databricksPrincipalId string = ''

var token = toLower(uniqueString(subscription().id, environmentName, location))
var cosmosDatabaseName = 'recommender'
var artifactsContainerName = 'models'
var deploymentContainerName = 'app-package'
var captureContainerName = 'capture'
var feedbackHubName = 'feedback'
var consumerGroupName = 'recommender'
var eventsTtlSeconds = 16416000 // 190 days: longer than the retrain window (RETRAIN_WINDOW_DAYS)

// Built-in role definition ids
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

// ---------------------------------------------------------------- monitoring
resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${token}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------- storage
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    minimumTlsVersion: 'TLS1_2'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource artifactsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: artifactsContainerName
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
}

resource captureContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: captureContainerName
}

// ---------------------------------------------------------------- Cosmos DB for NoSQL
resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: 'cosmos-${token}'
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    disableLocalAuth: true
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
      }
    ]
    capabilities: cosmosCapacityMode == 'serverless' ? [
      {
        name: 'EnableServerless'
      }
    ] : []
  }
}

resource cosmosDatabase 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: cosmos
  name: cosmosDatabaseName
  properties: {
    resource: {
      id: cosmosDatabaseName
    }
    options: cosmosCapacityMode == 'autoscale' ? {
      autoscaleSettings: {
        maxThroughput: cosmosAutoscaleMaxThroughput
      }
    } : {}
  }
}

// Every container is partitioned on /pk, the field the code writes (shared/stores/documents.py).
var containers = [
  {
    name: 'recommendations'
    ttl: -1
  }
  {
    name: 'events'
    ttl: eventsTtlSeconds
  }
  {
    name: 'deadletters'
    ttl: eventsTtlSeconds
  }
  {
    name: 'models'
    ttl: -1
  }
  {
    name: 'items'
    ttl: -1
  }
]

resource cosmosContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [for c in containers: {
  parent: cosmosDatabase
  name: c.name
  properties: {
    resource: {
      id: c.name
      partitionKey: {
        paths: [
          '/pk'
        ]
        kind: 'Hash'
      }
      defaultTtl: c.ttl
    }
  }
}]

// ---------------------------------------------------------------- Azure Managed Redis
resource redis 'Microsoft.Cache/redisEnterprise@2024-09-01-preview' = {
  name: 'redis-${token}'
  location: location
  tags: tags
  sku: {
    name: 'Balanced_B1'
  }
  properties: {
    minimumTlsVersion: '1.2'
  }
}

resource redisDatabase 'Microsoft.Cache/redisEnterprise/databases@2024-09-01-preview' = {
  parent: redis
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'VolatileLRU'
    accessKeysAuthentication: 'Disabled'
  }
}

resource redisAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2024-09-01-preview' = {
  parent: redisDatabase
  name: 'functionapp'
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: functionApp.identity.principalId
    }
  }
}

// The Databricks job's service principal (when given) reaches Redis, Cosmos DB and Storage as
// the Function App does; shared keys are off on all three.
resource redisDatabricksAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2024-09-01-preview' = if (!empty(databricksPrincipalId)) {
  parent: redisDatabase
  name: 'databricks'
  dependsOn: [
    redisAccess // one access-policy assignment at a time on a database
  ]
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: databricksPrincipalId
    }
  }
}

// ---------------------------------------------------------------- Event Hubs
resource eventHubs 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: 'evhns-${token}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  identity: {
    type: 'SystemAssigned' // Capture writes to Storage with this identity (no shared keys)
  }
  properties: {
    disableLocalAuth: true
  }
}

resource feedbackHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: eventHubs
  name: feedbackHubName
  dependsOn: [
    captureAccess // Capture's identity needs its Storage role before Capture is switched on
  ]
  properties: {
    partitionCount: 8
    messageRetentionInDays: 7
    captureDescription: {
      enabled: true
      encoding: 'Avro'
      intervalInSeconds: 300
      sizeLimitInBytes: 314572800
      skipEmptyArchives: true
      destination: {
        name: 'EventHubArchive.AzureBlockBlob'
        identity: {
          type: 'SystemAssigned'
        }
        properties: {
          storageAccountResourceId: storage.id
          blobContainer: captureContainerName
          archiveNameFormat: '{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}'
        }
      }
    }
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: feedbackHub
  name: consumerGroupName
}

// ---------------------------------------------------------------- Key Vault
resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${token}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

// ---------------------------------------------------------------- Function App (Flex Consumption)
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-${token}'
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
    }
  }
}

// App settings: named exactly as shared/settings.py reads them (tests/test_infra.py checks).
// A separate resource because some values need the app's own identity.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__accountName: storage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    RECO_DEFAULT_TENANT: 'default'
    RECO_CANDIDATES_PER_USER: '100'
    RECO_CACHE_TTL_SECONDS: '604800'
    RECO_ACTIVE_VERSION_REFRESH_SECONDS: '10'
    RECO_LRU_MAX_ENTRIES: '100000'
    REDIS_HOST: redis.properties.hostName
    REDIS_PORT: '10000'
    REDIS_SSL: 'true'
    REDIS_USERNAME: functionApp.identity.principalId
    REDIS_MAX_CONNECTIONS: '64'
    REDIS_TIMEOUT_SECONDS: '0.25'
    REDIS_POOL_TIMEOUT_SECONDS: '2'
    COSMOS_ENDPOINT: cosmos.properties.documentEndpoint
    COSMOS_DATABASE: cosmosDatabaseName
    COSMOS_TIMEOUT_SECONDS: '2'
    ARTIFACTS_ACCOUNT_URL: storage.properties.primaryEndpoints.blob
    ARTIFACTS_CONTAINER: artifactsContainerName
    EventHubConnection__fullyQualifiedNamespace: '${eventHubs.name}.servicebus.windows.net'
    EVENTHUB_NAME: feedbackHubName
    EVENTHUB_CONSUMER_GROUP: consumerGroupName
    EVENTHUB_MAX_RETRIES: '5'
    EVENTHUB_SEND_TIMEOUT_SECONDS: '10'
    RECO_ONLINE_RECENT_LIMIT: '50'
    RECO_ONLINE_HIDDEN_LIMIT: '1000'
    RECO_ONLINE_USER_TTL_SECONDS: '2592000'
    RECO_FEEDBACK_DEDUPE_TTL_SECONDS: '259200'
    RECO_TRENDING_WINDOW_HOURS: '48'
    RECO_TRENDING_HALF_LIFE_HOURS: '6'
    RECO_TRENDING_READ_CACHE_SECONDS: '5'
    RECO_RULES: rules
    RECO_EXPERIMENTS: experiments
    RECO_DIVERSITY_MAX_SHARE: '0.5'
    RECO_BREAKER_FAILURES: '5'
    RECO_BREAKER_RESET_SECONDS: '5'
    RECO_READ_RETRY_ATTEMPTS: '2'
    RECO_MODEL_LOAD_WAIT_SECONDS: '10'
    RECO_MAX_THREADS: '16'
    RETRAIN_SCHEDULE: retrainSchedule
    RETRAIN_TENANTS: tenants
    RETRAIN_WINDOW_DAYS: '180'
    RETRAIN_GATE_TOLERANCE: '0.02'
    RETRAIN_TUNING_SECONDS: '60'
    RETRAIN_MAX_FUNCTION_ROWS: '2000000'
    RETRAIN_LEASE_SECONDS: '3600'
    RECO_FILL_CHUNK_USERS: '1000'
    RECO_FILL_STORE_CONCURRENCY: '8'
    RECO_DATA_DIR: '/tmp/reco'
    MLFLOW_TRACKING_URI: mlflowTrackingUri
    DATABRICKS_JOB_ID: databricksJobId
    DATABRICKS_HOST: databricksHost
  }
}

// ---------------------------------------------------------------- role assignments (identity only)
var storageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource storageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, functionApp.id, role)
  scope: storage
  properties: {
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

var eventHubRoles = [
  roles.eventHubsDataReceiver
  roles.eventHubsDataSender
]

resource eventHubAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in eventHubRoles: {
  name: guid(eventHubs.id, functionApp.id, role)
  scope: eventHubs
  properties: {
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource captureAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, eventHubs.id, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    principalId: eventHubs.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

resource metricsAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionApp.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource keyVaultAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, functionApp.id, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

// Cosmos DB data plane: built-in Data Contributor for the app (and the deploying user).
resource cosmosAppAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmos
  name: guid(cosmos.id, functionApp.id, 'data-contributor')
  properties: {
    principalId: functionApp.identity.principalId
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    scope: cosmos.id
  }
}

resource cosmosDatabricksAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = if (!empty(databricksPrincipalId)) {
  parent: cosmos
  name: guid(cosmos.id, databricksPrincipalId, 'data-contributor')
  properties: {
    principalId: databricksPrincipalId
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    scope: cosmos.id
  }
}

resource storageDatabricksAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(databricksPrincipalId)) {
  name: guid(storage.id, databricksPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    principalId: databricksPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

resource cosmosUserAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = if (!empty(principalId)) {
  parent: cosmos
  name: guid(cosmos.id, principalId, 'data-contributor')
  properties: {
    principalId: principalId
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    scope: cosmos.id
  }
}

output functionAppName string = functionApp.name
output functionAppUri string = 'https://${functionApp.properties.defaultHostName}'
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output redisHost string = redis.properties.hostName
output artifactsAccountUrl string = storage.properties.primaryEndpoints.blob
// Where Capture writes the feedback hub's files ({Namespace}/{EventHub}/...): the Databricks job's events_path
output captureEventsPath string = 'abfss://${captureContainerName}@${storage.name}.dfs.${environment().suffixes.storage}/${eventHubs.name}/${feedbackHubName}/'
