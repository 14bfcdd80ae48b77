; Inno Setup 6 script: an installer for the one-folder bundle built by build_windows.ps1.
; Compile with:  iscc /DAppVersion=0.1.0 packaging\windows\rlhf-desktop.iss
; (run from the repository root; the output lands in dist\).
; NOT TESTED: written against the Inno Setup documentation; no Windows machine was available.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "RLHF Desktop"
#define AppExe "rlhf-desktop.exe"

[Setup]
AppId={{6B0F4C1E-7A52-4D1B-9E0B-2C7B2D6C9A11}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=rlhf-desktop
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
; Per-user install by default (no admin rights); the user may choose all users.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=rlhf-desktop-{#AppVersion}-windows-x86_64-setup
SetupIconFile=..\..\resources\icon.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole PyInstaller folder. User data lives in %LOCALAPPDATA%\rlhf-desktop, never here.
Source: "..\..\dist\rlhf-desktop\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
