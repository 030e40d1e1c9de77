# Peers of the fax processor tests (processor, processor/faxtiff): libtiff's
# tiffinfo, tiffcp and tiff2pdf and ImageMagick read the faxes our encoder
# writes and write faxes for our reader; tesseract with English data is the
# OCR the fax2text conversions run; Ghostscript draws PDFs for pdf2text and
# reads our PDFs back. Sourced by .ci/run; idempotent and quiet.

fax_need=()
command -v tiffinfo >/dev/null 2>&1 && command -v tiffcp >/dev/null 2>&1 && command -v tiff2pdf >/dev/null 2>&1 || fax_need+=(libtiff-tools)
command -v tesseract >/dev/null 2>&1 || fax_need+=(tesseract-ocr)
[ -e /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ] || [ -e /usr/share/tesseract-ocr/4.00/tessdata/eng.traineddata ] || fax_need+=(tesseract-ocr-eng)
command -v identify >/dev/null 2>&1 && [ -x /usr/bin/convert ] || fax_need+=(imagemagick)
command -v gs >/dev/null 2>&1 || fax_need+=(ghostscript)
if [ ${#fax_need[@]} -gt 0 ]; then
  apt_install "${fax_need[@]}"
fi
unset fax_need
