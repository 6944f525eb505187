#Requires -RunAsAdministrator
<#
Installs (or upgrades) ehrbridge as a Windows service.

  .\install.ps1                 # the default instance, service name "ehrbridge"
  .\install.ps1 -Name ehrbridge-lab

Puts ehrbridge.exe and the mappings in %ProgramFiles%\ehrbridge, the config
in %ProgramData%\ehrbridge\<Name>.yaml (kept if it exists: an upgrade keeps
your edits), lints it, installs the service (automatic delayed start,
restart on failure, the virtual account NT SERVICE\<Name>, an Event Log
source <Name>) and gives that account write access to the data directory
only. %ProgramData%\ehrbridge loses the permissions it inherits (every user
may read ProgramData): SYSTEM and Administrators only, the service account
reading its config and the keys directory (put key_file there) and writing
its data. It does not start the service: edit the config first, then
Start-Service <Name>. An upgrade stops the service, backs the log up,
replaces the binary and starts the service again.
#>
param([string]$Name = "ehrbridge")
$ErrorActionPreference = "Stop"
$bin = Join-Path $env:ProgramFiles "ehrbridge"
$dataRoot = Join-Path $env:ProgramData "ehrbridge"
$config = Join-Path $dataRoot "$Name.yaml"
$exe = Join-Path $bin "ehrbridge.exe"
New-Item -ItemType Directory -Force $bin, $dataRoot | Out-Null

$existing = Get-Service -Name $Name -ErrorAction SilentlyContinue
if ($existing) {
  # Upgrade: stop, back up the checkpoint log, replace, start.
  if ($existing.Status -eq "Running") { Stop-Service $Name }
  $backup = Join-Path $dataRoot ("$Name-backup-" + (Get-Date -Format "yyyyMMdd-HHmmss") + ".db")
  & $exe log backup $backup --config $config
  if ($LASTEXITCODE -ne 0) { throw "backing up the checkpoint log failed; nothing was changed" }
}
Copy-Item (Join-Path $PSScriptRoot "ehrbridge.exe") $exe -Force
Copy-Item (Join-Path $PSScriptRoot "mappings") $bin -Recurse -Force
if (-not (Test-Path $config)) { Copy-Item (Join-Path $PSScriptRoot "ehrbridge.yaml") $config }
& $exe lint --config $config
if ($LASTEXITCODE -ne 0) { throw "$config does not lint: fix it and run install.ps1 again" }

# The data root holds the config, the checkpoint log (patient data) and the
# key files: it must not inherit ProgramData's read access for every user
# (BUILTIN\Users). Inheritance is removed and only SYSTEM and Administrators
# keep full control (SIDs, so that it works in any language); what lies below
# inherits that. On an upgrade this tightens an older installation too.
# Keep the checkpoint key file in $keys: the service account may read it.
$keys = Join-Path $dataRoot "keys"
New-Item -ItemType Directory -Force $keys | Out-Null
icacls $dataRoot /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" | Out-Null
if ($LASTEXITCODE -ne 0) { throw "restricting access to $dataRoot failed" }
icacls $keys /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" | Out-Null
if ($LASTEXITCODE -ne 0) { throw "restricting access to $keys failed" }

if ($existing) {
  if ($existing.Status -eq "Running") { Start-Service $Name }
  Write-Host "upgraded $Name; its log was backed up to $backup"
  exit 0
}
& $exe service install --name $Name --config $config
if ($LASTEXITCODE -ne 0) { throw "installing the service failed" }
# The virtual account reads the config and writes only the data directory.
$data = Join-Path $dataRoot "data"
New-Item -ItemType Directory -Force $data | Out-Null
icacls $config /grant "NT SERVICE\${Name}:(R)" | Out-Null
icacls $data /grant "NT SERVICE\${Name}:(OI)(CI)M" | Out-Null
icacls $keys /grant "NT SERVICE\${Name}:(OI)(CI)R" | Out-Null
Write-Host "installed $Name. Edit $config, check it with: & '$exe' lint --config '$config'"
Write-Host "then: Start-Service $Name   (logs: Event Viewer > Windows Logs > Application, source $Name)"
