// Image loading: what a new image session needs from the store, fetched
// before the session exists and without any lock held (image_sessions.h).
// Transient store errors are the store's to retry; metadata that fails
// verification is fetched again here. Everything fetched is verified.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "chunkstore/chunk_reader.h"
#include "chunkstore/digest.h"
#include "fs/image_reader.h"
#include "fs/profile.h"
#include "snapshotter/store_registry.h"

namespace ferry::snapshotter {

// An image's start-up profile as loading finds it: absent (status
// kNotFound), unreadable (another status), or decoded, with its start-up
// pack perhaps already being fetched.
struct EarlyProfile {
  Status status;
  std::optional<fs::Profile> profile;
  bool fetching = false;
};

struct LoadedImage {
  std::unique_ptr<fs::ImageReader> reader;  // verified against its id
  EarlyProfile profile;
  // The image's fetch counters: they already count the start-up pack's
  // prefetch; the session's ImageFs goes on with them.
  chunkstore::CountersPtr fetch;
};

// The id that `name` (a ref, an id or a unique id prefix) names in `store`.
// NotFound if none; InvalidArgument for an ambiguous prefix.
Result<Digest> ResolveImageName(chunkstore::ObjectStore& store, const std::string& name);

// Loads image `id` from `store` and, at the same time, its start-up profile;
// a version 3 profile's start-up pack is sent for as soon as the profile is
// in (into store.reader, as prefetch). Fails as fs::LoadImage does (the
// profile's absence or damage is only reported in `profile`). Blocks for
// as long as the store takes.
Result<LoadedImage> LoadImageAndProfile(OpenStore& store, const Digest& id);

}  // namespace ferry::snapshotter
