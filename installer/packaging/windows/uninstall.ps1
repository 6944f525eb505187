#Requires -RunAsAdministrator
<#
Removes the ehrbridge service. The config and the data directory (the
checkpoint log, which may hold messages not yet sent) are kept under
%ProgramData%\ehrbridge; the binary stays until the last instance is gone.
#>
param([string]$Name = "ehrbridge")
$ErrorActionPreference = "Stop"
$exe = Join-Path (Join-Path $env:ProgramFiles "ehrbridge") "ehrbridge.exe"
& $exe service uninstall --name $Name
if ($LASTEXITCODE -ne 0) { throw "uninstalling $Name failed" }
Write-Host "removed $Name; config and data are kept in $(Join-Path $env:ProgramData 'ehrbridge')"
