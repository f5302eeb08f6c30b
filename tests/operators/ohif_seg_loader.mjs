// Load a DICOM SEG the way OHIF v3 does: @cornerstonejs/adapters' createFromDICOMSegBuffer, with
// Cornerstone's metadata providers fed from the source files (read with dcmjs, as OHIF does).
//
//   cd NODE_MODULES_PARENT && node --input-type=module - BY SEG SOURCE... < ohif_seg_loader.mjs
//
// (read from stdin so that the packages resolve from the current folder). BY is "uid" (frames
// found by their SourceImageSequence, OHIF's first choice) or "geometry" (by FrameOfReferenceUID,
// ReferencedSeriesSequence and each frame's position, its fallback). Prints JSON: the segment
// labels, the label map (uint16, one slice per SOURCE in the order given, base64), the warnings.
import fs from "fs";

const warnings = [];  // before the imports: their loggers bind console.warn when they load
console.warn = (...args) => warnings.push(args.join(" "));
const core = await import("@cornerstonejs/core");
const { adaptersSEG } = await import("@cornerstonejs/adapters");
const { default: dcmjs } = await import("dcmjs");

const [by, segPath, ...sources] = process.argv.slice(2);
const read = (path) => {
  const buffer = fs.readFileSync(path);
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
};
const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
const instances = Object.fromEntries(sources.map((path) => [`file:${path}`, DicomMetaDictionary.naturalizeDataset(DicomMessage.readFile(read(path)).dict)]));
core.metaData.addProvider((type, imageId) => {
  const ds = instances[imageId];
  if (!ds) return undefined;
  const iop = ds.ImageOrientationPatient.map(Number);
  switch (type) {
    case "instance":
      return ds;
    case "generalImageModule":
      return by === "uid" ? { sopInstanceUID: ds.SOPInstanceUID, instanceNumber: ds.InstanceNumber } : undefined;
    case "generalSeriesModule":
      return { seriesInstanceUID: ds.SeriesInstanceUID, modality: ds.Modality };
    case "imagePixelModule":
      return { rows: ds.Rows, columns: ds.Columns, bitsAllocated: ds.BitsAllocated, bitsStored: ds.BitsStored, highBit: ds.HighBit,
               pixelRepresentation: ds.PixelRepresentation, samplesPerPixel: 1, photometricInterpretation: ds.PhotometricInterpretation };
    case "imagePlaneModule":
      return { rows: ds.Rows, columns: ds.Columns, frameOfReferenceUID: ds.FrameOfReferenceUID, rowCosines: iop.slice(0, 3),
               columnCosines: iop.slice(3, 6), imageOrientationPatient: iop, imagePositionPatient: ds.ImagePositionPatient.map(Number),
               pixelSpacing: ds.PixelSpacing.map(Number), rowPixelSpacing: Number(ds.PixelSpacing[0]), columnPixelSpacing: Number(ds.PixelSpacing[1]) };
    default:
      return undefined;
  }
}, 10000);
const imageIds = Object.keys(instances);
const loaded = await adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(imageIds, read(segPath), { metadataProvider: core.metaData });
const labelmap = new Uint16Array(loaded.labelMapImages[0].flatMap((image) => Array.from(image.getPixelData())));
process.stdout.write(JSON.stringify({
  labels: loaded.segMetadata.data.slice(1).map((segment) => segment.SegmentLabel),
  labelmaps: loaded.labelMapImages.length,
  labelmap: Buffer.from(labelmap.buffer).toString("base64"),
  warnings,
}));
