// Optional: an Azure Databricks workspace for retraining data that outgrows one Functions instance.
param environmentName string
param location string
param tags object

var token = toLower(uniqueString(subscription().id, environmentName, location))

resource workspace 'Microsoft.Databricks/workspaces@2024-05-01' = {
  name: 'dbw-${token}'
  location: location
  tags: tags
  sku: {
    name: 'premium'
  }
  properties: {
    managedResourceGroupId: subscriptionResourceId('Microsoft.Resources/resourceGroups', 'rg-${environmentName}-databricks')
  }
}

output workspaceUrl string = workspace.properties.workspaceUrl
