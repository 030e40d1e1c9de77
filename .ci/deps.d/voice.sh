# Peers of the voice processor tests (processor): espeak-ng speaks for
# text2speech; pocketsphinx with its US English model recognises for
# speech2text and speech2mixed; pocketsphinx-testdata ships the LibriVox
# recordings (human speech nobody here made) whose word error rate the
# tests measure. Sourced by .ci/run; idempotent and quiet.

voice_need=()
command -v espeak-ng >/dev/null 2>&1 || voice_need+=(espeak-ng)
command -v pocketsphinx_continuous >/dev/null 2>&1 || voice_need+=(pocketsphinx)
[ -e /usr/share/pocketsphinx/model/en-us/en-us.lm.bin ] || voice_need+=(pocketsphinx-en-us)
[ -e /usr/share/pocketsphinx/test/data/librivox/transcription ] || voice_need+=(pocketsphinx-testdata)
if [ ${#voice_need[@]} -gt 0 ]; then
  apt_install "${voice_need[@]}"
fi
unset voice_need
