# Helpers of cmake/CMakeLists.txt: read the version, check the built library, write the
# package files. Kept apart so the CMakeLists reads as the install layout and nothing else.

# Reads `version` and `description` of the [package] table of Cargo.toml.
function(pkv_read_cargo_package toml out_version out_description)
  file(STRINGS "${toml}" _lines)
  set(_section "")
  set(_version "")
  set(_description "")
  foreach(_line IN LISTS _lines)
    if(_line MATCHES "^[ \t]*\\[([^]]*)\\]")
      set(_section "${CMAKE_MATCH_1}")
    elseif(_section STREQUAL "package" AND _line MATCHES "^[ \t]*version[ \t]*=[ \t]*\"([^\"]*)\"")
      set(_version "${CMAKE_MATCH_1}")
    elseif(_section STREQUAL "package" AND _line MATCHES "^[ \t]*description[ \t]*=[ \t]*\"([^\"]*)\"")
      set(_description "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  if(NOT _version MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+$")
    message(FATAL_ERROR "${toml}: no MAJOR.MINOR.PATCH version in [package] (read '${_version}')")
  endif()
  set(${out_version} "${_version}" PARENT_SCOPE)
  set(${out_description} "${_description}" PARENT_SCOPE)
endfunction()

# Fails when the committed header's PKV_VERSION_* macros disagree with Cargo.toml (a stale
# header would install with the wrong version macros).
function(pkv_check_header_version header version)
  string(REPLACE "." ";" _parts "${version}")
  set(_names MAJOR MINOR PATCH)
  foreach(_i RANGE 2)
    list(GET _names ${_i} _name)
    list(GET _parts ${_i} _want)
    file(STRINGS "${header}" _define REGEX "^#define PKV_VERSION_${_name} ")
    if(NOT _define MATCHES "^#define PKV_VERSION_${_name} ([0-9]+)$" OR NOT CMAKE_MATCH_1 EQUAL _want)
      message(FATAL_ERROR "${header}: '${_define}' but Cargo.toml says version ${version}; regenerate the header "
                          "with `PKV_BLESS=1 cargo test --test header`")
    endif()
  endforeach()
endfunction()

# The SONAME policy (kept in step with build.rs): while 0.x every minor release may break the
# ABI, so the SONAME carries the minor: libpagedkv.so.0.MINOR; from 1.0 on: libpagedkv.so.MAJOR.
function(pkv_soname version out)
  string(REPLACE "." ";" _parts "${version}")
  list(GET _parts 0 _major)
  list(GET _parts 1 _minor)
  if(_major EQUAL 0)
    set(${out} "libpagedkv.so.0.${_minor}" PARENT_SCOPE)
  else()
    set(${out} "libpagedkv.so.${_major}" PARENT_SCOPE)
  endif()
endfunction()

# Checks that `library` is an ELF shared object whose SONAME is `soname` (when readelf is
# available) and returns its pointer size.
function(pkv_check_library library soname out_sizeof_void_p)
  file(READ "${library}" _ident LIMIT 5 HEX)
  if(_ident STREQUAL "7f454c4602")
    set(${out_sizeof_void_p} 8 PARENT_SCOPE)
  elseif(_ident STREQUAL "7f454c4601")
    set(${out_sizeof_void_p} 4 PARENT_SCOPE)
  else()
    message(FATAL_ERROR "${library} is not an ELF file (first bytes ${_ident})")
  endif()
  find_program(PKV_READELF NAMES readelf)
  if(PKV_READELF)
    execute_process(COMMAND "${PKV_READELF}" -d "${library}" OUTPUT_VARIABLE _dynamic RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0 OR NOT _dynamic MATCHES "Library soname: \\[([^]]*)\\]")
      message(FATAL_ERROR "${library} has no SONAME (expected ${soname}; build.rs sets it)")
    endif()
    if(NOT CMAKE_MATCH_1 STREQUAL soname)
      message(FATAL_ERROR "${library} has SONAME ${CMAKE_MATCH_1}, expected ${soname} for this version: "
                          "rebuild with `cargo build --release`")
    endif()
  endif()
endfunction()

# Writes pagedkvConfig.cmake, pagedkvConfigVersion.cmake, pagedkvTargets.cmake and pagedkv.pc.
#   PREFIX         absolute prefix the package is laid out under (the config locates the library
#                  and header relative to its own directory, so moving the prefix is fine)
#   CMAKE_DIR      where the CMake files go (relative to PREFIX, or absolute)
#   PKGCONFIG_DIR  where the .pc goes (relative to PREFIX, or absolute)
#   LIBRARY        the library the imported target points at (relative to PREFIX, or absolute)
#   INCLUDE_DIR    the directory holding pagedkv.h (relative to PREFIX, or absolute)
#   OUTPUT_DIR     write all four files here (to be installed) instead of into CMAKE_DIR and
#                  PKGCONFIG_DIR
#   RELOCATABLE_PC the .pc locates everything from ${pcfiledir} instead of an absolute prefix
function(pkv_write_package_files)
  cmake_parse_arguments(ARG "RELOCATABLE_PC" "PREFIX;CMAKE_DIR;PKGCONFIG_DIR;LIBRARY;INCLUDE_DIR;OUTPUT_DIR" ""
                        ${ARGN})
  foreach(_what IN ITEMS CMAKE_DIR PKGCONFIG_DIR LIBRARY INCLUDE_DIR)
    if(IS_ABSOLUTE "${ARG_${_what}}")
      set(_abs_${_what} "${ARG_${_what}}")
    else()
      set(_abs_${_what} "${ARG_PREFIX}/${ARG_${_what}}")
    endif()
  endforeach()
  if(ARG_OUTPUT_DIR)
    set(_cmake_out "${ARG_OUTPUT_DIR}")
    set(_pc_out "${ARG_OUTPUT_DIR}")
  else()
    set(_cmake_out "${_abs_CMAKE_DIR}")
    set(_pc_out "${_abs_PKGCONFIG_DIR}")
  endif()

  set(PKV_CONFIG_LIBRARY "${ARG_LIBRARY}")
  set(PKV_CONFIG_INCLUDEDIR "${ARG_INCLUDE_DIR}")
  configure_package_config_file(
    "${CMAKE_CURRENT_SOURCE_DIR}/pagedkvConfig.cmake.in" "${_cmake_out}/pagedkvConfig.cmake"
    INSTALL_DESTINATION "${ARG_CMAKE_DIR}"
    INSTALL_PREFIX "${ARG_PREFIX}"
    PATH_VARS PKV_CONFIG_LIBRARY PKV_CONFIG_INCLUDEDIR)
  # 0.x: 0.1.y satisfies find_package(pagedkv 0.1), never 0.2 (the SONAME changes with it).
  string(REGEX MATCH "^[0-9]+" _major "${PKV_VERSION}")
  if(_major EQUAL 0)
    set(_compat SameMinorVersion)
  else()
    set(_compat SameMajorVersion)
  endif()
  write_basic_package_version_file("${_cmake_out}/pagedkvConfigVersion.cmake" VERSION "${PKV_VERSION}"
                                   COMPATIBILITY ${_compat})
  configure_file("${CMAKE_CURRENT_SOURCE_DIR}/pagedkvTargets.cmake.in" "${_cmake_out}/pagedkvTargets.cmake" @ONLY)

  if(ARG_RELOCATABLE_PC)
    file(RELATIVE_PATH _up "${_abs_PKGCONFIG_DIR}" "${ARG_PREFIX}")
    string(REGEX REPLACE "/$" "" _up "${_up}")
    set(PKV_PC_PREFIX "\${pcfiledir}/${_up}")
  else()
    set(PKV_PC_PREFIX "${ARG_PREFIX}")
  endif()
  get_filename_component(_abs_libdir "${_abs_LIBRARY}" DIRECTORY)
  foreach(_pair IN ITEMS "LIBDIR;${_abs_libdir}" "INCLUDEDIR;${_abs_INCLUDE_DIR}")
    list(GET _pair 0 _key)
    list(GET _pair 1 _dir)
    file(RELATIVE_PATH _rel "${ARG_PREFIX}" "${_dir}")
    if(_rel MATCHES "^\\.\\./" OR _rel STREQUAL "..")
      set(PKV_PC_${_key} "${_dir}")
    elseif(_rel STREQUAL "")
      set(PKV_PC_${_key} "\${prefix}")
    else()
      set(PKV_PC_${_key} "\${prefix}/${_rel}")
    endif()
  endforeach()
  configure_file("${CMAKE_CURRENT_SOURCE_DIR}/pagedkv.pc.in" "${_pc_out}/pagedkv.pc" @ONLY)
endfunction()
