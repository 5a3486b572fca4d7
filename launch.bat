@echo off
rem Atelier launcher for Windows. Double-click it, or run: launch.bat [flags for app.py]
rem   1. find Python   2. create .venv beside the app   3. install torch (CUDA build when nvidia-smi sees
rem   an NVIDIA GPU, CPU build otherwise)   4. install requirements.txt   5. start the app, which opens the browser.
rem Steps 3 and 4 run again only when requirements.txt or the torch choice changed.
rem A first argument --install-only stops after step 4; --torch-choice prints the torch build step 3 chose and stops.
rem Environment: ATELIER_TORCH=cuda^|cpu^|skip   ATELIER_TORCH_VERSION (default 2.14.1)
rem              ATELIER_TORCHVISION_VERSION (default 0.29.1, the release paired with that torch)
rem              ATELIER_TORCH_INDEX (pip index for torch)   PYTHON (interpreter that creates the venv)
setlocal EnableExtensions EnableDelayedExpansion
cd /d "%~dp0"

if "%ATELIER_TORCH_VERSION%"=="" (set "TORCH_VERSION=2.14.1") else (set "TORCH_VERSION=%ATELIER_TORCH_VERSION%")
if "%ATELIER_TORCHVISION_VERSION%"=="" (set "TORCHVISION_VERSION=0.29.1") else (set "TORCHVISION_VERSION=%ATELIER_TORCHVISION_VERSION%")
set "VENV=.venv"
set "STAMP=%VENV%\.atelier-installed"

rem 1. Python
if "%PYTHON%"=="" (
  where py >nul 2>nul && (set "PYTHON=py -3") || (
    where python >nul 2>nul && (set "PYTHON=python")
  )
)
if "%PYTHON%"=="" (
  echo Atelier needs Python 3.10 or newer; install it from python.org first.
  pause
  exit /b 1
)

rem 2. Virtual environment
if not exist "%VENV%\Scripts\python.exe" (
  echo [atelier] creating the virtual environment in %VENV%
  %PYTHON% -m venv "%VENV%" || goto :failed
)
set "VENV_PYTHON=%VENV%\Scripts\python.exe"

rem 3. torch: which build. CUDA 13 wheels need NVIDIA driver 580 or newer; CUDA 12.8 wheels run on 525 and newer.
set "TORCH_KIND=%ATELIER_TORCH%"
if "%TORCH_KIND%"=="" (
  set "TORCH_KIND=cpu"
  nvidia-smi -L 2>nul | findstr /C:"GPU" >nul && set "TORCH_KIND=cuda"
)
set "TORCH_INDEX=%ATELIER_TORCH_INDEX%"
set "DRIVER="
if "%TORCH_KIND%"=="cuda" (
  for /f "tokens=1 delims=." %%d in ('nvidia-smi --query-gpu^=driver_version --format^=csv^,noheader 2^>nul') do if not defined DRIVER set "DRIVER=%%d"
)
rem PyPI's Windows wheels are the CPU build; the CUDA build comes from PyTorch's own index.
if "%TORCH_KIND%"=="cuda" if "%TORCH_INDEX%"=="" (
  set "TORCH_INDEX=https://download.pytorch.org/whl/cu130"
  if defined DRIVER (
    if !DRIVER! LSS 525 (
      echo [atelier] your NVIDIA driver ^(!DRIVER!^) is too old for PyTorch %TORCH_VERSION%: install driver 580 or newer
      echo           ^(525 at the least^) from https://www.nvidia.com/Download/index.aspx, or set ATELIER_TORCH=cpu.
      pause
      exit /b 1
    )
    if !DRIVER! LSS 580 set "TORCH_INDEX=https://download.pytorch.org/whl/cu128"
  )
)
if not "%TORCH_KIND%"=="cuda" if not "%TORCH_KIND%"=="cpu" if not "%TORCH_KIND%"=="skip" (
  echo ATELIER_TORCH must be cuda, cpu or skip, not '%TORCH_KIND%'
  exit /b 1
)
if "%~1"=="--torch-choice" (
  echo torch=%TORCH_KIND% index=%TORCH_INDEX% driver=%DRIVER%
  exit /b 0
)

rem 3-4. Install, unless this exact set-up is already there
rem The venv path is relative and has no spaces, so it needs no quotes inside for /f.
for /f "delims=" %%h in ('%VENV_PYTHON% -c "import hashlib;print(hashlib.sha256(open('requirements.txt','rb').read()).hexdigest())"') do set "REQ_HASH=%%h"
set "WANTED=torch=%TORCH_KIND% %TORCH_VERSION% torchvision=%TORCHVISION_VERSION% %TORCH_INDEX%; requirements=%REQ_HASH%"
set "HAVE="
rem The stamp's first line is what was asked for (set /p reads only the first line); its second, what was installed.
if exist "%STAMP%" set /p HAVE=<"%STAMP%"
if "!HAVE!"=="!WANTED!" (
  echo [atelier] environment up to date; skipping installation
) else (
  if not "%TORCH_KIND%"=="skip" (
    echo [atelier] installing torch %TORCH_VERSION% and torchvision %TORCHVISION_VERSION% ^(%TORCH_KIND% build^)
    if "%TORCH_INDEX%"=="" (
      "%VENV_PYTHON%" -m pip install "torch==%TORCH_VERSION%" "torchvision==%TORCHVISION_VERSION%" || goto :failed
    ) else (
      "%VENV_PYTHON%" -m pip install --retries 2 "torch==%TORCH_VERSION%" "torchvision==%TORCHVISION_VERSION%" --extra-index-url "%TORCH_INDEX%" || goto :failed
    )
  )
  echo [atelier] installing requirements.txt
  "%VENV_PYTHON%" -m pip install -r requirements.txt || goto :failed
  > "%STAMP%" echo !WANTED!
  rem What pip really installed, which is not always what was asked for.
  set "INSTALLED=none"
  for /f "delims=" %%t in ('"%VENV_PYTHON%" -c "import torch; print(torch.__version__, 'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU')" 2^>nul') do set "INSTALLED=%%t"
  >> "%STAMP%" echo installed: torch !INSTALLED!
  echo [atelier] installed torch !INSTALLED! build
  if "%TORCH_KIND%"=="cuda" echo !INSTALLED! | findstr /C:" CPU" >nul && echo [atelier] warning: a CUDA build was asked for, but pip installed the CPU build; the GPU will not be used.
)

if "%~1"=="--install-only" exit /b 0

rem 5. Start
"%VENV_PYTHON%" app.py %*
exit /b %errorlevel%

:failed
echo [atelier] installation failed; see the messages above.
pause
exit /b 1
