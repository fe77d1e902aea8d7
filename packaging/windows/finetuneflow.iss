; Inno Setup script for FineTuneFlow-Setup.exe (Inno Setup 6.3 or later).
; packaging/build.py runs it after PyInstaller:
;   iscc /DAppVersion=0.1.0 /DBundleDir=dist\FineTuneFlow /DIconFile=resources\icons\finetuneflow.ico
;        /Odist packaging\windows\finetuneflow.iss
; Directives: https://jrsoftware.org/ishelp/

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\FineTuneFlow"
#endif
#ifndef IconFile
  #define IconFile "..\..\resources\icons\finetuneflow.ico"
#endif
#define AppName "FineTuneFlow"
#define AppExeName "FineTuneFlow.exe"

[Setup]
; The AppId identifies the app to Windows across versions: never change it.
AppId={{9622DBBC-CA8D-4AC7-A223-6B1993272B91}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher={#AppName}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Installs for the current user without administrator rights; the user may choose all users.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename={#AppName}-Setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\{#AppExeName}
Compression=lzma2
SolidCompression=yes
; A CUDA bundle compressed beyond 4.2 GB would need DiskSpanning=yes (Setup-*.bin beside it).
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExeName}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExeName}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExeName}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
